import { isIPv4, isIPv6 } from 'node:net';

/** Which addresses the egress policy treats as private (loopback, private, link-local, metadata, …). */
// ---------------------------------------------------------------------------------------------
// Address classification

type V4Range = readonly [base: string, prefix: number, reason: string];
const V4_RANGES: readonly V4Range[] = [
  ['0.0.0.0', 8, 'unspecified address'],
  ['10.0.0.0', 8, 'private address'],
  ['100.64.0.0', 10, 'carrier-grade NAT address'],
  ['127.0.0.0', 8, 'loopback address'],
  ['169.254.0.0', 16, 'link-local (cloud metadata) address'],
  ['172.16.0.0', 12, 'private address'],
  ['192.0.0.0', 24, 'IETF protocol address'],
  ['192.0.2.0', 24, 'documentation address'],
  ['192.88.99.0', 24, '6to4 relay address'],
  ['192.168.0.0', 16, 'private address'],
  ['198.18.0.0', 15, 'benchmarking address'],
  ['198.51.100.0', 24, 'documentation address'],
  ['203.0.113.0', 24, 'documentation address'],
  ['224.0.0.0', 4, 'multicast address'],
  ['240.0.0.0', 4, 'reserved address'],
];

// `v4` marks prefixes whose low 32 bits (or bits 16..47 for 6to4) carry an IPv4 address that
// decides the verdict, so ::ffff:127.0.0.1 is as private as 127.0.0.1.
type V6Range = readonly [base: string, prefix: number, reason: string | { v4: 'low' | '6to4' }];
const V6_RANGES: readonly V6Range[] = [
  ['::', 128, 'unspecified address'],
  ['::1', 128, 'loopback address'],
  ['::ffff:0:0', 96, { v4: 'low' }],
  ['::ffff:0:0:0', 96, { v4: 'low' }],
  ['::', 96, 'IPv4-compatible address'],
  ['64:ff9b::', 96, { v4: 'low' }],
  ['64:ff9b:1::', 48, 'NAT64 local-use address'],
  ['100::', 64, 'discard-only address'],
  ['2001::', 32, 'Teredo address'],
  ['2001:2::', 48, 'benchmarking address'],
  ['2001:db8::', 32, 'documentation address'],
  ['2002::', 16, { v4: '6to4' }],
  ['3fff::', 20, 'documentation address'],
  ['fc00::', 7, 'unique-local address'],
  ['fe80::', 10, 'link-local address'],
  ['fec0::', 10, 'site-local address'],
  ['ff00::', 8, 'multicast address'],
];

function v4ToInt(address: string): number {
  return address.split('.').reduce((acc, octet) => acc * 256 + Number(octet), 0);
}

function v6ToBigInt(address: string): bigint {
  let text = address;
  const dotted = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  if (dotted?.[1]) {
    const n = v4ToInt(dotted[1]);
    text = `${text.slice(0, -dotted[1].length)}${(n >>> 16).toString(16)}:${(n & 0xffff).toString(16)}`;
  }
  const [head = '', tail] = text.split('::');
  const headGroups = head ? head.split(':') : [];
  const tailGroups = tail ? tail.split(':') : [];
  const zeros = tail === undefined ? [] : Array<string>(8 - headGroups.length - tailGroups.length).fill('0');
  return [...headGroups, ...zeros, ...tailGroups].reduce((acc, g) => (acc << 16n) | BigInt(`0x${g}`), 0n);
}

function classifyV4(address: string): string | null {
  const n = v4ToInt(address);
  for (const [base, prefix, reason] of V4_RANGES) {
    const mask = prefix === 0 ? 0 : (~0 << (32 - prefix)) >>> 0;
    if ((n & mask) >>> 0 === v4ToInt(base)) return reason;
  }
  return null;
}

function intToV4(n: number): string {
  return [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.');
}

function classifyV6(address: string): string | null {
  const n = v6ToBigInt(address);
  for (const [base, prefix, verdict] of V6_RANGES) {
    const shift = BigInt(128 - prefix);
    if (n >> shift !== v6ToBigInt(base) >> shift) continue;
    if (typeof verdict === 'string') return verdict;
    const embedded = Number(verdict.v4 === 'low' ? n & 0xffffffffn : (n >> 80n) & 0xffffffffn);
    const inner = classifyV4(intToV4(embedded));
    return inner === null ? null : `IPv4-embedded ${inner}`;
  }
  return null;
}

/** Why an address must not be reached by default, or null when it is a public unicast address. */
export function classifyAddress(address: string): string | null {
  const bare = address.replace(/^\[(.*)\]$/, '$1').replace(/%.*$/, '');
  if (isIPv4(bare)) return classifyV4(bare);
  if (isIPv6(bare)) return classifyV6(bare.toLowerCase());
  // Fail closed: anything we cannot parse as an address is treated as unreachable.
  return 'not an IP address';
}

/** True unless `address` is a public unicast IPv4/IPv6 address (unparseable input counts as private). */
export function isPrivateAddress(address: string): boolean {
  return classifyAddress(address) !== null;
}
