// Validation of KmeshNodeInfo objects read from the cluster (spec {spi, addresses, bootID, podCIDRS}, all four
// required; Kmesh leaves status empty): the shape, then the semantic checks Kmesh skips (IPs, CIDRs, boot ID
// length, SPI range). A bad object yields a one-line reason naming the first bad field, and is skipped by the
// caller; it never throws and never blocks good peers. Written out by hand rather than as a zod schema: a daemon
// starting among 5,000 peers validates 5,000 objects before its first plan, which through zod took 60-110 ms of
// cold code (docs/benchmarks.md, sixteenth session), and zod was the daemon's only use of it.

import { SPI_MAX, SPI_MIN } from '../model/ipsec-key.js';
import type { NodeInfo } from '../model/node.js';
import { normaliseCidr, parseIp } from '../model/ip-address.js';
import { exactArray } from '../util/exact-array.js';

/** Kubernetes boot IDs are UUIDs; Kmesh slices 36 bytes and panics on anything shorter. */
const BOOT_ID_MIN_LENGTH = 36;

/** What a JSON value is, for "expected X, received Y". */
function received(x: unknown): string {
  if (x === null) return 'null';
  if (Array.isArray(x)) return 'array';
  if (typeof x === 'number' && Number.isNaN(x)) return 'NaN';
  return typeof x;
}

const isObject = (x: unknown): x is Record<string, unknown> => typeof x === 'object' && x !== null && !Array.isArray(x);

/** A list of strings, or why `value` at `where` is not one (an empty list is refused). */
function stringList(value: unknown, where: string): string[] | string {
  if (!Array.isArray(value)) return `${where} expected array, received ${received(value)}`;
  for (let i = 0; i < value.length; i++) {
    const item: unknown = value[i];
    if (typeof item !== 'string') return `${where}[${i}] expected string, received ${received(item)}`;
  }
  if (value.length === 0) return `${where} is empty`;
  return value as string[];
}

/** The four spec fields with their JSON types checked, or the first field that is wrong and why. */
function specShape(
  obj: unknown,
): { name: string; spi: number; addresses: string[]; bootID: string; podCIDRS: string[] } | string {
  if (!isObject(obj)) return `object expected, received ${received(obj)}`;
  const { metadata, spec } = obj;
  if (!isObject(metadata)) return `metadata expected object, received ${received(metadata)}`;
  const name = metadata.name;
  if (typeof name !== 'string') return `metadata.name expected string, received ${received(name)}`;
  if (name === '') return 'metadata.name is empty';
  if (!isObject(spec)) return `spec expected object, received ${received(spec)}`;
  const spi = spec.spi;
  if (typeof spi !== 'number' || !Number.isFinite(spi)) return `spec.spi expected number, received ${received(spi)}`;
  if (!Number.isInteger(spi)) return 'spec.spi is not an integer';
  if (spi < SPI_MIN) return `spec.spi must be at least ${SPI_MIN}`;
  if (spi > SPI_MAX) return `spec.spi must be at most ${SPI_MAX}`;
  const addresses = stringList(spec.addresses, 'spec.addresses');
  if (typeof addresses === 'string') return addresses;
  const bootID = spec.bootID;
  if (typeof bootID !== 'string') return `spec.bootID expected string, received ${received(bootID)}`;
  const podCIDRS = stringList(spec.podCIDRS, 'spec.podCIDRS');
  if (typeof podCIDRS === 'string') return podCIDRS;
  return { name, spi, addresses, bootID, podCIDRS };
}

/** How messages name the object (built for an error only: a good object costs no label). */
function labelOf(obj: unknown): string {
  return `KmeshNodeInfo ${JSON.stringify(nameOf(obj) ?? '(unnamed)')}`;
}

function nameOf(obj: unknown): string | undefined {
  if (!isObject(obj)) return undefined;
  const metadata = obj.metadata;
  if (!isObject(metadata)) return undefined;
  const name = metadata.name;
  return typeof name === 'string' && name !== '' ? name : undefined;
}

/** Validated NodeInfo from a KmeshNodeInfo object, or a one-line reason it is unusable. */
export function parseNodeInfo(obj: unknown): { ok: NodeInfo } | { error: string } {
  const spec = specShape(obj);
  if (typeof spec === 'string') return { error: `${labelOf(obj)}: ${spec}` };
  // Indexed loops, no Set: run 5,000 times before V8 optimises them when a daemon starts among 5,000 peers.
  const { addresses } = spec;
  for (let i = 0; i < addresses.length; i++) {
    const address = addresses[i] as string;
    if (!parseIp(address))
      return { error: `${labelOf(obj)}: spec.addresses[${i}] ${JSON.stringify(address)} is not an IP address` };
    for (let j = 0; j < i; j++)
      if (addresses[j] === address) return { error: `${labelOf(obj)}: spec.addresses lists ${address} twice` };
  }
  if (spec.bootID.length === 0) return { error: `${labelOf(obj)}: spec.bootID is empty` };
  if (spec.bootID.length < BOOT_ID_MIN_LENGTH) {
    return {
      error: `${labelOf(obj)}: spec.bootID ${JSON.stringify(spec.bootID)} is shorter than ${BOOT_ID_MIN_LENGTH} characters`,
    };
  }
  const podCIDRs: string[] = [];
  for (let i = 0; i < spec.podCIDRS.length; i++) {
    const cidr = spec.podCIDRS[i] as string;
    const normal = normaliseCidr(cidr);
    if (!normal) return { error: `${labelOf(obj)}: spec.podCIDRS[${i}] ${JSON.stringify(cidr)} is not a CIDR` };
    if (!podCIDRs.includes(normal)) podCIDRs.push(normal);
  }
  return {
    ok: {
      name: spec.name,
      spi: spec.spi,
      addresses: addresses.slice(),
      bootID: spec.bootID,
      podCIDRs: exactArray(podCIDRs),
    },
  };
}
