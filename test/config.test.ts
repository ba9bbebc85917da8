import { describe, expect, it } from 'vitest';
import { ConfigError, configVariables, loadConfig } from '../src/config.js';

describe('config', () => {
  it('has defaults for everything but secrets', () => {
    const c = loadConfig({});
    expect(c.port).toBe(3003);
    expect(c.databaseUrl).toBeUndefined();
    expect(c.secretKey).toBeUndefined();
    expect(c.encryptionKey).toBeUndefined();
    expect(c.adminKey).toBeUndefined();
    expect(c.serverUrl).toBe('http://127.0.0.1:3003');
    expect(c.dataDir).toMatch(/\.terapi$/);
  });

  it.each([
    ['PORT', 'eighty'],
    ['PORT', '70000'],
    ['DATABASE_URL', 'mysql://localhost/db'],
    ['REDIS_URL', 'http://localhost'],
    ['TERAPI_SECRET_KEY', 'short'],
    ['TERAPI_ADMIN_KEY', 'has spaces in it but is otherwise quite long enough'],
    ['TERAPI_SERVER_URL', 'not a url'],
    ['LOG_LEVEL', 'loud'],
    ['TERAPI_ALLOW_PROVIDER_URL_OVERRIDES', 'maybe'],
  ])('rejects a bad %s naming it', (name, value) => {
    expect(() => loadConfig({ [name]: value })).toThrow(ConfigError);
    expect(() => loadConfig({ [name]: value })).toThrow(name);
  });

  it("derives the default server URL from HOST and PORT, so links share the banner's origin", () => {
    expect(loadConfig({ PORT: '4000' }).serverUrl).toBe('http://127.0.0.1:4000');
    expect(loadConfig({ HOST: 'terapi.internal', PORT: '80' }).serverUrl).toBe('http://terapi.internal:80');
    expect(loadConfig({ HOST: '0.0.0.0' }).serverUrl).toBe('http://127.0.0.1:3003');
    expect(loadConfig({ HOST: '::' }).serverUrl).toBe('http://[::1]:3003');
    expect(loadConfig({ HOST: '::1' }).serverUrl).toBe('http://[::1]:3003');
    expect(loadConfig({ HOST: '0.0.0.0', TERAPI_SERVER_URL: 'https://terapi.example.com/' }).serverUrl).toBe('https://terapi.example.com');
  });

  it('treats empty values as unset (docker-compose passes VAR= for unset variables)', () => {
    expect(loadConfig({ DATABASE_URL: '', PORT: '' }).port).toBe(3003);
  });

  it('lists the variables it reads', () => {
    expect(configVariables).toEqual(
      expect.arrayContaining([
        'PORT',
        'HOST',
        'DATABASE_URL',
        'REDIS_URL',
        'TERAPI_DATA_DIR',
        'TERAPI_SECRET_KEY',
        'TERAPI_ENCRYPTION_KEY',
        'TERAPI_SERVER_URL',
        'TERAPI_ADMIN_KEY',
        'LOG_LEVEL',
      ]),
    );
  });
});
