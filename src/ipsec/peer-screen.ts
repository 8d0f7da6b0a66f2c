// Decides which peers can be planned for and how: pairs each peer with the local node per address family
// (tunnel endpoints = the first underlay address of that family on each side, pod CIDRs of the same
// family), and rejects peers that would collide with the local node or with another peer (same name,
// same underlay address, overlapping pod CIDRs). Peers are taken in name order, so the outcome does not
// depend on list order and the first claimant of an address or CIDR keeps it.

import type { NodeInfo } from '../model/node.js';
import { CidrClaims } from './cidr-claims.js';
import {
  canonicalIp,
  normalisedCidrText,
  parseCidrLenient,
  parseIp,
  type Family,
  type ParsedCidr,
} from '../model/ip-address.js';

/** One encrypted path between the local node and a peer in one address family. */
export interface Tunnel {
  family: Family;
  /** Underlay addresses as published (they feed the key derivation). */
  localAddress: string;
  peerAddress: string;
  /** Normalised pod CIDRs of this family. */
  localCidrs: string[];
  peerCidrs: string[];
}

export interface ScreenedPeer {
  node: NodeInfo;
  tunnels: Tunnel[];
  /** Things worth reporting that do not stop the peer (e.g. a pod CIDR family without a tunnel). */
  notes: string[];
}

export interface PeerRejection {
  name: string;
  /** The SPI the rejected object advertises (as given). */
  advertisedSpi: number;
  reason: string;
}

const FAMILIES: readonly Family[] = [4, 6];

/** A node's first underlay address and its pod CIDRs, per family (parsed once). */
interface FamilyView {
  address: Partial<Record<Family, string>>;
  cidrs: Record<Family, { text: string; cidr: ParsedCidr }[]>;
}

function familyView(addresses: readonly string[], cidrs: readonly { text: string; cidr: ParsedCidr }[]): FamilyView {
  const view: FamilyView = { address: {}, cidrs: { 4: [], 6: [] } };
  for (const a of addresses) {
    const family = parseIp(a)?.family;
    if (family && view.address[family] === undefined) view.address[family] = a;
  }
  for (const c of cidrs) view.cidrs[c.cidr.family].push(c);
  return view;
}

function parseCidrs(texts: readonly string[]): { text: string; cidr: ParsedCidr }[] | string {
  const out: { text: string; cidr: ParsedCidr }[] = [];
  for (const text of texts) {
    const parsed = parseCidrLenient(text);
    if (!parsed) return `pod CIDR ${JSON.stringify(text)} is not a CIDR`;
    const normal = normalisedCidrText(parsed);
    out.push({ text: normal, cidr: parsed });
  }
  return out;
}

/** Throws a one-line error when the local node description is unusable (nothing is planned then). */
function checkLocalNode(local: NodeInfo): void {
  if (!local.name) throw new Error('local node: name is empty');
  if (!Number.isInteger(local.spi) || local.spi < 0)
    throw new Error(`local node: spi ${local.spi} is not an integer >= 0`);
  if (local.addresses.length === 0) throw new Error('local node: no underlay addresses');
  for (const a of local.addresses)
    if (!parseIp(a)) throw new Error(`local node: address ${JSON.stringify(a)} is not an IP address`);
  if (!local.bootID) throw new Error('local node: boot ID is empty');
  for (const c of local.podCIDRs)
    if (!parseCidrLenient(c)) throw new Error(`local node: pod CIDR ${JSON.stringify(c)} is not a CIDR`);
}

/** Semantic problems of a peer on its own (callers normally ran parseNodeInfo already). */
function peerProblem(peer: NodeInfo): string | undefined {
  if (!Number.isInteger(peer.spi) || peer.spi < 1) return `spi ${peer.spi} is not a positive integer`;
  if (!peer.bootID) return 'boot ID is empty';
  if (peer.addresses.length === 0) return 'no underlay addresses';
  for (const a of peer.addresses) if (!parseIp(a)) return `address ${JSON.stringify(a)} is not an IP address`;
  return undefined;
}

interface Claims {
  addresses: Map<string, string>;
  cidrs: CidrClaims;
}

/** The first item whose claim lookup finds an owner, with that owner (a loop: this runs for every peer). */
function firstClash<I, O>(items: readonly I[], owner: (item: I) => O | undefined): { item: I; other: O } | undefined {
  for (const item of items) {
    const other = owner(item);
    if (other) return { item, other };
  }
  return undefined;
}

export interface Screening {
  accepted: ScreenedPeer[];
  rejected: PeerRejection[];
}

// The last screening and its inputs. A daemon step screens every peer although few change between steps, and
// the sources hand out the same peer objects while they are unchanged (the loop validates each KmeshNodeInfo
// object once): the same local node and the same peer objects in the same order give the same screening, so
// it is handed out again (its objects are never written to after screening). Anything else screens afresh.
let lastScreening: { local: NodeInfo; peers: readonly NodeInfo[]; result: Screening } | undefined;

/** Equal lists of strings, element by element (also the planner's memo comparison). */
export const sameTexts = (a: readonly string[], b: readonly string[]): boolean =>
  a.length === b.length && a.every((x, i) => x === b[i]);

function sameLocal(a: NodeInfo, b: NodeInfo): boolean {
  return (
    a.name === b.name &&
    a.spi === b.spi &&
    a.bootID === b.bootID &&
    sameTexts(a.addresses, b.addresses) &&
    sameTexts(a.podCIDRs, b.podCIDRs)
  );
}

export function screenPeers(local: NodeInfo, peers: readonly NodeInfo[]): Screening {
  const last = lastScreening;
  if (
    last !== undefined &&
    last.peers.length === peers.length &&
    sameLocal(last.local, local) &&
    peers.every((p, i) => p === last.peers[i])
  ) {
    return last.result;
  }
  const result = screenAfresh(local, peers);
  lastScreening = {
    local: { ...local, addresses: [...local.addresses], podCIDRs: [...local.podCIDRs] },
    peers: [...peers],
    result,
  };
  return result;
}

function screenAfresh(local: NodeInfo, peers: readonly NodeInfo[]): Screening {
  checkLocalNode(local);
  const claims: Claims = { addresses: new Map(), cidrs: new CidrClaims() };
  const localLabel = `the local node ${local.name}`;
  for (const a of local.addresses) claims.addresses.set(canonicalIp(a), localLabel);
  const localParsed = parseCidrs(local.podCIDRs);
  if (typeof localParsed === 'string') throw new Error(`local node: ${localParsed}`);
  for (const { text, cidr } of localParsed) claims.cidrs.add(cidr, { owner: localLabel, text });
  const localView = familyView(local.addresses, localParsed);
  const localCidrs: Record<Family, string[]> = {
    4: localView.cidrs[4].map((c) => c.text),
    6: localView.cidrs[6].map((c) => c.text),
  };

  const accepted: ScreenedPeer[] = [];
  const rejected: PeerRejection[] = [];
  const seenNames = new Set<string>();
  const sorted = [...peers]
    .filter((p) => p.name !== local.name)
    .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));

  for (const raw of sorted) {
    const reject = (reason: string): void => {
      rejected.push({ name: raw.name, advertisedSpi: raw.spi, reason });
    };
    if (seenNames.has(raw.name)) {
      reject('more than one KmeshNodeInfo with this name');
      continue;
    }
    seenNames.add(raw.name);
    const parsedCidrs = parseCidrs(raw.podCIDRs);
    const problem = peerProblem(raw) ?? (typeof parsedCidrs === 'string' ? parsedCidrs : undefined);
    if (problem || typeof parsedCidrs === 'string') {
      reject(problem ?? 'invalid');
      continue;
    }
    const node: NodeInfo = { ...raw, podCIDRs: parsedCidrs.map((c) => c.text) };
    const addressClash = firstClash(node.addresses, (a) => claims.addresses.get(canonicalIp(a)));
    if (addressClash) {
      reject(`underlay address ${addressClash.item} is also used by ${addressClash.other}`);
      continue;
    }
    const cidrClash = firstClash(parsedCidrs, (c) => claims.cidrs.findOverlap(c.cidr));
    if (cidrClash) {
      reject(`pod CIDR ${cidrClash.item.text} overlaps ${cidrClash.other.text} of ${cidrClash.other.owner}`);
      continue;
    }

    const tunnels: Tunnel[] = [];
    const notes: string[] = [];
    const peerView = familyView(node.addresses, parsedCidrs);
    for (const family of FAMILIES) {
      const localAddress = localView.address[family];
      const peerAddress = peerView.address[family];
      const peerCidrs = peerView.cidrs[family].map((c) => c.text);
      if (localAddress && peerAddress) {
        tunnels.push({ family, localAddress, peerAddress, localCidrs: localCidrs[family], peerCidrs });
      } else if (peerCidrs.length > 0) {
        notes.push(
          `pod CIDR ${peerCidrs.join(', ')} is not encrypted: no IPv${family} underlay address on ${localAddress ? 'the peer' : 'the local node'} (marked traffic to it is blocked)`,
        );
      }
    }
    if (tunnels.length === 0) {
      reject('no underlay address family in common with the local node');
      continue;
    }
    for (const a of node.addresses) claims.addresses.set(canonicalIp(a), `node ${node.name}`);
    for (const { text, cidr } of parsedCidrs) claims.cidrs.add(cidr, { owner: `node ${node.name}`, text });
    accepted.push({ node, tunnels, notes });
  }
  return { accepted, rejected };
}
