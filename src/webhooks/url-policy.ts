import { EgressDeniedError, type EgressPolicy, type HostLookup, pinnedLookup } from '../lib/egress.js';
import { ValidationError } from '../lib/errors.js';

// A resolver that does not answer in time says nothing about the policy; the URL is kept.
const LOOKUP_TIMEOUT_MS = 5_000;

/**
 * Why the egress client would refuse to deliver to `url`, or null. The host is resolved through
 * the client's own checked lookup, so the verdict is the one every delivery would meet. A name
 * that does not resolve now is not refused: DNS may be down, or the record not published yet.
 */
async function refusal(policy: EgressPolicy, url: string, resolve?: HostLookup): Promise<string | null> {
  if (policy.allowPrivateNetworks) return null;
  const host = new URL(url).hostname.replace(/^\[(.*)\]$/, '$1');
  const lookup = pinnedLookup(policy, resolve);
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(null), LOOKUP_TIMEOUT_MS);
    lookup(host, { all: true }, (err) => {
      clearTimeout(timer);
      if (!(err instanceof EgressDeniedError)) return resolve(null);
      resolve(err.address && err.address !== host ? `${host} (resolves to ${err.address}: ${err.reason})` : `${host} (${err.reason})`);
    });
  });
}

/** Refuses (400, naming `urls.<i>`) the first URL deliveries could never reach under the egress policy. */
export async function assertDeliverable(policy: EgressPolicy, urls: readonly string[], resolve?: HostLookup): Promise<void> {
  const verdicts = await Promise.all(urls.map((u) => refusal(policy, u, resolve)));
  const details = verdicts.flatMap((reason, i) =>
    reason
      ? [
          {
            field: `urls.${i}`,
            message:
              `deliveries to ${reason} are refused by the egress policy; ` +
              'set TERAPI_EGRESS_ALLOW_PRIVATE=true or list the host in TERAPI_EGRESS_ALLOWED_HOSTS to allow them',
          },
        ]
      : [],
  );
  if (details.length) throw new ValidationError(`${details[0]!.field}: ${details[0]!.message}`, details);
}
