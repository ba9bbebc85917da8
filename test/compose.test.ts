import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { parse } from 'yaml';
import { describe, expect, it } from 'vitest';
import { configVariables, loadConfig } from '../src/config.js';

// No Docker engine runs in CI: these tests read docker-compose.yml and the Dockerfile as files and
// check them against the config schema, so that a new variable or a typo fails here, not at deploy.

const root = new URL('../', import.meta.url);
const composeText = readFileSync(new URL('docker-compose.yml', root), 'utf8');
const dockerfile = readFileSync(new URL('Dockerfile', root), 'utf8');

interface Service {
  image?: string;
  build?: string | { context?: string; dockerfile?: string };
  command?: string | string[];
  environment?: Record<string, string | number | boolean | null> | string[];
  healthcheck?: { test?: string | string[]; disable?: boolean };
  volumes?: (string | { source?: string; target?: string })[];
  ports?: (string | number | { target?: number; published?: string | number })[];
  depends_on?: string[] | Record<string, { condition?: string }>;
  restart?: string;
  deploy?: { replicas?: number };
}

// Compose files use YAML merge keys (`<<: *terapi`).
const compose = parse(composeText, { merge: true }) as { services: Record<string, Service>; volumes?: Record<string, unknown> };
const services = compose.services;
const terapiServices = ['migrate', 'api', 'worker'] as const;
const requiredSecrets = ['TERAPI_ENCRYPTION_KEY', 'TERAPI_SECRET_KEY', 'TERAPI_ADMIN_KEY'];

/** A service's environment as name → raw (uninterpolated) string; list and map forms both allowed. */
function environmentOf(service: Service): Record<string, string> {
  const env = service.environment ?? {};
  if (Array.isArray(env)) {
    return Object.fromEntries(
      env.map((line) => {
        const eq = line.indexOf('=');
        return eq < 0 ? [line, ''] : [line.slice(0, eq), line.slice(eq + 1)];
      }),
    );
  }
  return Object.fromEntries(Object.entries(env).map(([k, v]) => [k, v == null ? '' : String(v)]));
}

/**
 * Compose variable interpolation (`$$`, `$VAR`, `${VAR}`, `${VAR:-d}`, `${VAR-d}`, `${VAR:?e}`,
 * `${VAR?e}`, `${VAR:+a}`, `${VAR+a}`) against `vars`, the shell/.env environment compose would see.
 */
function interpolate(value: string, vars: Record<string, string | undefined>): string {
  return value.replace(
    /\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?+])([^}]*))?\}|\$([A-Za-z_][A-Za-z0-9_]*)/g,
    (match, name: string | undefined, op: string | undefined, arg: string | undefined, bare: string | undefined) => {
      if (match === '$$') return '$';
      if (bare) return vars[bare] ?? '';
      const v = vars[name!];
      const set = v !== undefined;
      const nonEmpty = set && v !== '';
      switch (op) {
        case undefined:
          return v ?? '';
        case ':-':
          return nonEmpty ? v : arg!;
        case '-':
          return set ? v : arg!;
        case ':?':
          if (!nonEmpty) throw new Error(`required variable ${name} is missing a value: ${arg}`);
          return v;
        case '?':
          if (!set) throw new Error(`required variable ${name} is missing a value: ${arg}`);
          return v;
        case ':+':
          return nonEmpty ? arg! : '';
        case '+':
          return set ? arg! : '';
        default:
          throw new Error(`unsupported interpolation ${match}`);
      }
    },
  );
}

const command = (s: Service) => (Array.isArray(s.command) ? s.command : s.command?.split(/\s+/));
const buildContext = (s: Service) => (typeof s.build === 'string' ? s.build : s.build?.context);

/** Dummy but valid secrets, as an operator would export them before `docker compose up`. */
const secrets = {
  TERAPI_ENCRYPTION_KEY: randomBytes(32).toString('base64'),
  TERAPI_SECRET_KEY: randomBytes(24).toString('hex'),
  TERAPI_ADMIN_KEY: randomBytes(32).toString('hex'),
};

describe('docker-compose.yml', () => {
  it('has postgres, redis, migrate, api and worker', () => {
    for (const name of ['postgres', 'redis', ...terapiServices]) expect(services, name).toHaveProperty(name);
  });

  it('runs api, worker and migrate from the Terapi image with their role as command', () => {
    for (const role of terapiServices) {
      const s = services[role]!;
      expect(buildContext(s), `${role} build context`).toBe('.');
      expect(s.image ?? '', `${role} image`).toMatch(/terapi/);
      expect(command(s), `${role} command`).toEqual([role]);
    }
    expect(services.api!.image).toBe(services.worker!.image);
    expect(services.migrate!.restart).toBe('no');
  });

  it('starts api and worker only after migrate succeeded and postgres and redis are healthy', () => {
    for (const role of ['api', 'worker']) {
      const deps = services[role]!.depends_on as Record<string, { condition?: string }>;
      expect(deps.migrate?.condition, role).toBe('service_completed_successfully');
      expect(deps.postgres?.condition, role).toBe('service_healthy');
      expect(deps.redis?.condition, role).toBe('service_healthy');
    }
    const migrateDeps = services.migrate!.depends_on as Record<string, { condition?: string }>;
    expect(migrateDeps.postgres?.condition).toBe('service_healthy');
  });

  it('gives every long-running service a healthcheck', () => {
    for (const [name, s] of Object.entries(services)) {
      if (name === 'migrate') continue;
      expect(s.healthcheck?.test, `${name} healthcheck`).toBeTruthy();
      expect(s.healthcheck?.disable, `${name} healthcheck disabled`).not.toBe(true);
    }
    expect(JSON.stringify(services.postgres!.healthcheck!.test)).toContain('pg_isready');
    expect(JSON.stringify(services.redis!.healthcheck!.test)).toContain('redis-cli');
    expect(JSON.stringify(services.api!.healthcheck!.test)).toContain('/ready');
  });

  it('publishes the api port that the api listens on', () => {
    const env = environmentOf(services.api!);
    expect(services.api!.ports?.map(String)).toContain(`3003:${interpolate(env.PORT!, {})}`);
  });

  it('keeps postgres and redis data in named volumes', () => {
    for (const name of ['postgres', 'redis']) {
      const volumes = services[name]!.volumes ?? [];
      expect(volumes.length, `${name} volumes`).toBeGreaterThan(0);
      const source = String(typeof volumes[0] === 'string' ? volumes[0].split(':')[0] : volumes[0]!.source);
      expect(compose.volumes ?? {}, `${name} named volume`).toHaveProperty(source);
    }
    expect(services.redis!.command).toEqual(['redis-server', '--appendonly', 'yes']);
  });

  it('sets every config variable in each Terapi service, and nothing else', () => {
    expect(configVariables.length).toBeGreaterThan(0);
    for (const role of terapiServices) {
      const names = Object.keys(environmentOf(services[role]!));
      expect(
        configVariables.filter((v) => !names.includes(v)),
        `${role}: config variables missing`,
      ).toEqual([]);
      expect(
        names.filter((v) => !configVariables.includes(v)),
        `${role}: unknown variables (typos?)`,
      ).toEqual([]);
    }
    // One shared block: the roles cannot drift apart.
    expect(environmentOf(services.worker!)).toEqual(environmentOf(services.api!));
    expect(environmentOf(services.migrate!)).toEqual(environmentOf(services.api!));
  });

  it('documents every variable with a comment', () => {
    const block = composeText.split(/^x-terapi-env:.*$/m)[1]!.split(/^\S/m)[0]!;
    const lines = block.split('\n');
    for (const name of configVariables) {
      const i = lines.findIndex((l) => l.trimStart().startsWith(`${name}:`));
      expect(i, `${name} in x-terapi-env`).toBeGreaterThan(0);
      expect(lines[i - 1]!.trim(), `comment above ${name}`).toMatch(/^#\s*\S/);
    }
  });

  it('requires the secrets with ${VAR:?message}', () => {
    const env = environmentOf(services.api!);
    for (const name of requiredSecrets) {
      expect(env[name], name).toMatch(new RegExp(`^\\$\\{${name}:\\?[^}]+\\}$`));
    }
    expect(() => interpolate(env.TERAPI_ENCRYPTION_KEY!, {})).toThrow(/TERAPI_ENCRYPTION_KEY/);
  });

  it('points DATABASE_URL at the postgres service and REDIS_URL at the redis service', () => {
    const env = environmentOf(services.api!);
    const db = new URL(interpolate(env.DATABASE_URL!, {}));
    expect(db.protocol).toMatch(/^postgres(ql)?:$/);
    expect(db.hostname).toBe('postgres');
    const pg = services.postgres!.environment as Record<string, string>;
    expect(decodeURIComponent(db.username)).toBe(pg.POSTGRES_USER);
    expect(decodeURIComponent(db.password)).toBe(interpolate(pg.POSTGRES_PASSWORD!, {}));
    expect(db.pathname).toBe(`/${pg.POSTGRES_DB}`);

    const redis = new URL(interpolate(env.REDIS_URL!, {}));
    expect(redis.protocol).toBe('redis:');
    expect(redis.hostname).toBe('redis');
  });

  it('passes values that the config schema accepts', () => {
    for (const role of terapiServices) {
      const raw = environmentOf(services[role]!);
      const env = Object.fromEntries(Object.entries(raw).map(([k, v]) => [k, interpolate(v, secrets)]));
      const config = loadConfig(env);
      expect(config.host).toBe('0.0.0.0');
      expect(config.port).toBe(3003);
      expect(config.databaseUrl).toMatch(/@postgres:5432\//);
      expect(config.redisUrl).toBe('redis://redis:6379');
      expect(config.encryptionKey).toBe(secrets.TERAPI_ENCRYPTION_KEY);
      expect(config.secretKey).toBe(secrets.TERAPI_SECRET_KEY);
      expect(config.adminKey).toBe(secrets.TERAPI_ADMIN_KEY);
      expect(config.logPretty).toBe(false);
    }
  });
});

describe('Dockerfile', () => {
  const instructions = dockerfile
    .replace(/\\\r?\n/g, ' ')
    .split(/\r?\n/)
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith('#'));
  const stages: string[][] = [];
  for (const line of instructions) {
    if (/^FROM\s/i.test(line)) stages.push([line]);
    else stages.at(-1)?.push(line);
  }
  const final = stages.at(-1) ?? [];

  it('is multi-stage', () => {
    expect(stages.length).toBeGreaterThanOrEqual(2);
  });

  it('builds dist/ and ships the provider catalog with it', () => {
    const build = stages.slice(0, -1).flat().join('\n');
    expect(build).toMatch(/npm ci/);
    expect(build).toMatch(/npm run build/);
    expect(build).toMatch(/catalog\.yaml\s+dist\/providers\//);
  });

  it('runs a node LTS (even major) image in the final stage', () => {
    const from = final[0]!.match(/^FROM\s+(?:--platform=\S+\s+)?node:(\d+)[-\w.]*/i);
    expect(from, final[0]).not.toBeNull();
    expect(Number(from![1]) % 2, `node ${from![1]} is not an LTS line`).toBe(0);
    expect(Number(from![1])).toBeGreaterThanOrEqual(20);
  });

  it('installs production dependencies only and runs as the node user', () => {
    expect(final.some((l) => /^RUN\s.*npm ci\b.*--omit=dev/.test(l))).toBe(true);
    expect(final).toContain('USER node');
    const user = final.findIndex((l) => /^USER\s/.test(l));
    const entry = final.findIndex((l) => /^ENTRYPOINT\s/.test(l));
    expect(user).toBeLessThan(entry);
  });

  it('copies dist, migrations and package.json, and starts dist/main.js', () => {
    const text = final.join('\n');
    expect(text).toMatch(/^COPY\s+--from=\S+\s+\S*dist\s/m);
    expect(text).toMatch(/^COPY\s+migrations\s/m);
    expect(text).toMatch(/^COPY\s+.*package\.json/m);
    expect(text).toMatch(/^ENTRYPOINT\s+\["node",\s*"dist\/main\.js"\]$/m);
    expect(text).toMatch(/^CMD\s+\["serve"\]$/m);
    expect(text).toMatch(/^EXPOSE\s+3003$/m);
    expect(text).toMatch(/HOST=0\.0\.0\.0/);
    expect(text).toMatch(/PORT=3003/);
    expect(text).toMatch(/TERAPI_DATA_DIR=\/data/);
    expect(text).not.toMatch(/\btsx\b/);
  });

  it('has a HEALTHCHECK that needs no curl', () => {
    const hc = final.find((l) => /^HEALTHCHECK\s/.test(l));
    expect(hc).toBeDefined();
    expect(hc).toContain('/health');
    expect(hc).toContain('fetch(');
    expect(hc).not.toMatch(/\b(curl|wget)\b/);
  });
});
