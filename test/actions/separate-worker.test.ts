import { z } from 'zod';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { defineAction } from '../../src/functions/define.js';
import { createTestApp, type TestApp } from '../helpers/app.js';
import { connectFake, enable } from '../helpers/syncs.js';

/**
 * `terapi api` and `terapi worker` as separate processes on one database and one Redis: the
 * process that answers a synchronous action is not the one that runs it, so the end of the run
 * has to reach it through Redis.
 */

const extra = {
  github: [
    defineAction({
      name: 'echo',
      description: 'answers with its input',
      input: z.object({ n: z.number().int() }),
      output: z.object({ n: z.number().int() }),
      async exec(_ctx, input) {
        return { n: input.n };
      },
    }),
    defineAction({
      name: 'refuse',
      description: 'always fails',
      input: z.object({}),
      output: z.object({}),
      async exec() {
        throw new Error('refused on purpose');
      },
    }),
  ],
};

let api: TestApp;
let worker: TestApp;

beforeAll(async () => {
  const config = { allowProviderUrlOverrides: true };
  api = await createTestApp({ config, extraFunctions: extra });
  worker = await createTestApp({ config, db: api.db, workers: true, extraFunctions: extra });
  await connectFake(api, { key: 'gh', provider: 'github', baseUrl: 'http://127.0.0.1:9', token: 't', connectionId: 'c1' });
  await enable(api, 'gh', 'echo');
  await enable(api, 'gh', 'refuse');
});
afterAll(async () => {
  await worker?.close();
  await api?.close();
});

const trigger = (action_name: string, input: object) =>
  api.call({ method: 'POST', url: '/action/trigger', payload: { connection_id: 'c1', provider_config_key: 'gh', action_name, input } });

describe('a synchronous action run by another process', () => {
  it('answers with its output as soon as the worker is done', async () => {
    const started = Date.now();
    for (let n = 1; n <= 5; n++) {
      const r = await trigger('echo', { n });
      expect(r.statusCode, r.body).toBe(200);
      expect(r.json()).toEqual({ success: true, action_name: 'echo', output: { n }, error: null });
    }
    // Reading the run row alone would take at least a second per action (the first read of a
    // waiting trigger); the worker's signal ends each wait as soon as the run is finished.
    expect(Date.now() - started).toBeLessThan(4000);
  });

  it('answers with its failure', async () => {
    const r = await trigger('refuse', {});
    expect(r.statusCode, r.body).toBe(424);
    expect(r.json()).toMatchObject({ error: 'action_failed', message: 'refused on purpose', action_name: 'refuse' });
    const run = await api.call({ method: 'GET', url: `/action/${r.json().run_id}` });
    expect(run.json()).toMatchObject({ status: 'error', success: false, error: 'refused on purpose' });
  });
});
