import type { AddressInfo } from 'node:net';
import { Nango } from '@nangohq/node';
import type { TestApp } from '../helpers/app.js';

/** Nango's own Node SDK pointed at the test app, listening on a loopback port. */
export async function sdkFor(t: TestApp, secretKey = t.env.key): Promise<Nango> {
  if (!t.app.server.listening) await t.app.listen({ host: '127.0.0.1', port: 0 });
  const { port } = t.app.server.address() as AddressInfo;
  return new Nango({ host: `http://127.0.0.1:${port}`, secretKey });
}

/** The status and body Terapi answered to an SDK call that must fail (the SDK throws axios errors). */
export async function failure(
  call: Promise<unknown>,
): Promise<{ status: number; body: { error: string; message: string; details?: { field: string }[] } }> {
  try {
    await call;
  } catch (err) {
    const response = (err as { response?: { status: number; data: never } }).response;
    if (response) return { status: response.status, body: response.data };
    throw err;
  }
  throw new Error('the SDK call succeeded');
}
