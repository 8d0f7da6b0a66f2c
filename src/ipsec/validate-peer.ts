// Validation of KmeshNodeInfo objects read from the cluster (spec {spi, addresses, bootID, podCIDRS}, all four
// required; Kmesh leaves status empty): shape via zod, then the semantic checks Kmesh skips (IPs, CIDRs, boot ID
// length, SPI range). A bad object yields a one-line reason and is skipped by the caller; it never throws and
// never blocks good peers.

import { z } from 'zod';
import { SPI_MAX, SPI_MIN } from '../model/ipsec-key.js';
import type { NodeInfo } from '../model/node.js';
import { normaliseCidr, parseIp } from '../model/ip-address.js';
import { exactArray } from '../util/exact-array.js';

/** Kubernetes boot IDs are UUIDs; Kmesh slices 36 bytes and panics on anything shorter. */
const BOOT_ID_MIN_LENGTH = 36;

const kmeshNodeInfoShape = z.object({
  metadata: z.object({ name: z.string().min(1, 'is empty') }),
  spec: z.object({
    spi: z
      .number()
      .int('is not an integer')
      .min(SPI_MIN, `must be at least ${SPI_MIN}`)
      .max(SPI_MAX, `must be at most ${SPI_MAX}`),
    addresses: z.array(z.string()).min(1, 'is empty'),
    bootID: z.string(),
    podCIDRS: z.array(z.string()).min(1, 'is empty'),
  }),
});

function nameOf(obj: unknown): string | undefined {
  if (typeof obj !== 'object' || obj === null) return undefined;
  const metadata = (obj as { metadata?: unknown }).metadata;
  if (typeof metadata !== 'object' || metadata === null) return undefined;
  const name = (metadata as { name?: unknown }).name;
  return typeof name === 'string' && name !== '' ? name : undefined;
}

function describePath(path: readonly PropertyKey[]): string {
  return path.reduce<string>(
    (acc, part) => (typeof part === 'number' ? `${acc}[${part}]` : acc ? `${acc}.${String(part)}` : String(part)),
    '',
  );
}

/** Validated NodeInfo from a KmeshNodeInfo object, or a one-line reason it is unusable. */
export function parseNodeInfo(obj: unknown): { ok: NodeInfo } | { error: string } {
  const label = `KmeshNodeInfo ${JSON.stringify(nameOf(obj) ?? '(unnamed)')}`;
  const parsed = kmeshNodeInfoShape.safeParse(obj);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const where = issue ? describePath(issue.path) : '';
    return { error: `${label}: ${where || 'object'} ${issue?.message ?? 'is invalid'}` };
  }
  const { metadata, spec } = parsed.data;
  const seen = new Set<string>();
  for (const [i, address] of spec.addresses.entries()) {
    if (!parseIp(address))
      return { error: `${label}: spec.addresses[${i}] ${JSON.stringify(address)} is not an IP address` };
    if (seen.has(address)) return { error: `${label}: spec.addresses lists ${address} twice` };
    seen.add(address);
  }
  if (spec.bootID.length === 0) return { error: `${label}: spec.bootID is empty` };
  if (spec.bootID.length < BOOT_ID_MIN_LENGTH) {
    return {
      error: `${label}: spec.bootID ${JSON.stringify(spec.bootID)} is shorter than ${BOOT_ID_MIN_LENGTH} characters`,
    };
  }
  const podCIDRs: string[] = [];
  for (const [i, cidr] of spec.podCIDRS.entries()) {
    const normal = normaliseCidr(cidr);
    if (!normal) return { error: `${label}: spec.podCIDRS[${i}] ${JSON.stringify(cidr)} is not a CIDR` };
    if (!podCIDRs.includes(normal)) podCIDRs.push(normal);
  }
  return {
    ok: {
      name: metadata.name,
      spi: spec.spi,
      addresses: [...spec.addresses],
      bootID: spec.bootID,
      podCIDRs: exactArray(podCIDRs),
    },
  };
}
