// The floor under bench:xfrm's cold first plan: what any planner in this runtime pays at least, measured in fresh
// processes like the first plan (same node flags, nothing of the plan's code run before), so the cold plan's
// figure can be read against it as the full apply is read against `ip -batch`. Two parts, each in its own process:
//   keys:    the plan's pair keys (SPEC: SHA-512 per direction and held key) through the planner's derivation;
//   objects: the plan's output built bare: every SA, policy, template, selector and per-peer record the planner
//            returns for the bench cluster, as object literals in one loop, with no screening, no memo, no
//            distinctness check and no key derivation (one shared key buffer).
// Run as a program it measures one part and prints one JSON line; bench:xfrm calls coldPlanFloor().
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import type { KeyEndpoint } from '../../src/keys/derive.js';
import { requestPairKey, settlePairKeys } from '../../src/ipsec/pair-key-batch.js';
import {
  inboundEspMark,
  MARK_DECRYPT,
  MARK_ENCRYPT,
  MARK_INBOUND_MASK,
  MARK_TYPE_MASK,
} from '../../src/model/marks.js';
import {
  BLOCK_POLICY_PRIORITY,
  DEFAULT_REPLAY_WINDOW,
  IPPROTO_ESP,
  KMESH_REQID,
  PEER_POLICY_PRIORITY,
} from '../../src/ipsec/ownership.js';
import { loadAddon } from '../../src/native/addon.js';
import { benchCluster, type BenchCluster } from './bench-cluster.js';
import { inFreshProcess } from './fresh-process.js';
import { median } from './median.js';
import { underDaemonMemorySettings } from './daemon-memory-settings.js';
import { runAsMain } from './run-as-main.js';

type Part = 'keys' | 'objects';

interface PartResult {
  part: Part;
  ms: number;
  /** keys: pair keys derived; objects: SAs and policies built (checked against the real plan's counts). */
  keys: number;
  states: number;
  policies: number;
}

export interface ColdPlanFloor {
  /** Medians over the runs, each in a fresh process. */
  keysMs: number;
  objectsMs: number;
  keys: number;
  states: number;
  policies: number;
}

/** The plan's pair keys for the bench cluster (inbound and outbound per peer and held key), derived. */
function deriveKeys(cluster: BenchCluster): number {
  const local = cluster.local;
  const localEnd: KeyEndpoint = { ip: local.addresses[0] as string, bootID: local.bootID };
  const held = cluster.keys.keys();
  let n = 0;
  for (let i = 0; i < cluster.peers.length; i++) {
    const peer = cluster.peers[i] as BenchCluster['peers'][number];
    const peerEnd: KeyEndpoint = { ip: peer.addresses[0] as string, bootID: peer.bootID };
    for (let k = 0; k < held.length; k++) {
      const psk = (held[k] as (typeof held)[number]).key;
      requestPairKey(psk, peerEnd, localEnd);
      requestPairKey(psk, localEnd, peerEnd);
      n += 2;
    }
  }
  settlePairKeys();
  return n;
}

/** The plan's output for the bench cluster, built bare (returned whole, so no part of it is dead code). */
function buildObjects(cluster: BenchCluster): {
  states: object[];
  policies: object[];
  peers: object[];
  addressIds: object[];
} {
  const local = cluster.local;
  const localAddress = local.addresses[0] as string;
  const localCidr = local.podCIDRs[0] as string;
  const held = cluster.keys.keys();
  const key = Buffer.alloc(36);
  const encrypt = { value: MARK_ENCRYPT, mask: MARK_TYPE_MASK };
  const decrypted = { value: MARK_DECRYPT, mask: MARK_TYPE_MASK };
  const outputMark = { value: MARK_DECRYPT, mask: MARK_INBOUND_MASK };
  const n = cluster.peers.length;
  const states = new Array<object>(2 * n * held.length);
  const policies = new Array<object>(1 + 3 * n);
  const peers = new Array<object>(n);
  const addressIds = new Array<object>(n);
  let s = 0;
  let p = 0;
  policies[p++] = {
    owner: null,
    role: 'block',
    policy: {
      dir: 'out',
      selector: { family: 4, src: '0.0.0.0/0', dst: '0.0.0.0/0', proto: 0 },
      mark: encrypt,
      priority: BLOCK_POLICY_PRIORITY,
      action: 'block',
      templates: [],
    },
  };
  for (let i = 0; i < n; i++) {
    const peer = cluster.peers[i] as BenchCluster['peers'][number];
    const peerAddress = peer.addresses[0] as string;
    const peerCidr = peer.podCIDRs[0] as string;
    const peerId = i + 1;
    const tunnel = { family: 4, localAddress, peerAddress, localCidrs: [localCidr], peerCidrs: [peerCidr] };
    const inboundMark = { value: inboundEspMark(peerId), mask: MARK_INBOUND_MASK };
    let send: object | undefined;
    for (let k = 0; k < held.length; k++) {
      const h = held[k] as (typeof held)[number];
      const aead = { name: h.aeadKeyName, key, icvBits: h.icvBits };
      states[s++] = {
        owner: peer.name,
        direction: 'inbound',
        state: {
          family: 4,
          src: peerAddress,
          dst: localAddress,
          spi: h.spi,
          proto: IPPROTO_ESP,
          mode: 'tunnel',
          reqid: KMESH_REQID,
          aead,
          mark: inboundMark,
          esn: true,
          replayWindow: DEFAULT_REPLAY_WINDOW,
          outputMark,
        },
      };
      const outbound = {
        owner: peer.name,
        direction: 'outbound',
        state: {
          family: 4,
          src: localAddress,
          dst: peerAddress,
          spi: h.spi,
          proto: IPPROTO_ESP,
          mode: 'tunnel',
          reqid: KMESH_REQID,
          aead: { name: h.aeadKeyName, key, icvBits: h.icvBits },
          mark: encrypt,
          esn: true,
          replayWindow: DEFAULT_REPLAY_WINDOW,
        },
      };
      states[s++] = outbound;
      if (h.spi === peer.spi) send = outbound;
    }
    const outTemplates = [
      {
        family: 4,
        src: localAddress,
        dst: peerAddress,
        proto: IPPROTO_ESP,
        mode: 'tunnel',
        reqid: KMESH_REQID,
        spi: peer.spi,
      },
    ];
    const inTemplates = [
      {
        family: 4,
        src: peerAddress,
        dst: localAddress,
        proto: IPPROTO_ESP,
        mode: 'tunnel',
        reqid: KMESH_REQID,
        spi: 0,
      },
    ];
    policies[p++] = {
      owner: peer.name,
      role: 'out',
      policy: {
        dir: 'out',
        selector: { family: 4, src: '0.0.0.0/0', dst: peerCidr, proto: 0 },
        mark: encrypt,
        priority: PEER_POLICY_PRIORITY,
        action: 'allow',
        templates: outTemplates,
      },
      requires: send,
    };
    const selector = { family: 4, src: peerCidr, dst: localCidr, proto: 0 };
    policies[p++] = {
      owner: peer.name,
      role: 'in',
      policy: {
        dir: 'in',
        selector,
        mark: decrypted,
        priority: PEER_POLICY_PRIORITY,
        action: 'allow',
        templates: inTemplates,
      },
    };
    policies[p++] = {
      owner: peer.name,
      role: 'fwd',
      policy: {
        dir: 'fwd',
        selector,
        mark: decrypted,
        priority: PEER_POLICY_PRIORITY,
        action: 'allow',
        templates: inTemplates,
      },
    };
    peers[i] = {
      name: peer.name,
      advertisedSpi: peer.spi,
      planned: true,
      peerId,
      sendSpi: peer.spi,
      tunnels: [tunnel],
      reasons: [],
    };
    addressIds[i] = { address: peerAddress, peerId };
  }
  states.length = s;
  policies.length = p;
  return { states, policies, peers, addressIds };
}

/** Measures one part in this process (a fresh one: bench:xfrm starts a process per part). */
function measure(part: Part, peers: number): PartResult {
  // Loaded first, as bench:xfrm (and the daemon) load it before the first plan.
  loadAddon();
  const cluster = benchCluster(peers);
  const t0 = performance.now();
  if (part === 'keys') {
    const keys = deriveKeys(cluster);
    return { part, ms: performance.now() - t0, keys, states: 0, policies: 0 };
  }
  const built = buildObjects(cluster);
  const ms = performance.now() - t0;
  return { part, ms, keys: 0, states: built.states.length, policies: built.policies.length };
}

/** Runs one part in a fresh node with this process's flags and environment; its result. */
function runPart(part: Part, peers: number): Promise<PartResult> {
  return inFreshProcess<PartResult>(fileURLToPath(import.meta.url), ['--part', part, '--peers', String(peers)]);
}

/** The floor for the bench cluster of `peers` peers: each part `runs` times, alternating, each in a fresh process. */
export async function coldPlanFloor(peers: number, runs = 3): Promise<ColdPlanFloor> {
  const keys: PartResult[] = [];
  const objects: PartResult[] = [];
  for (let r = 0; r < runs; r++) {
    keys.push(await runPart('keys', peers));
    objects.push(await runPart('objects', peers));
  }
  const last = objects.at(-1) as PartResult;
  return {
    keysMs: median(keys.map((x) => x.ms)),
    objectsMs: median(objects.map((x) => x.ms)),
    keys: (keys.at(-1) as PartResult).keys,
    states: last.states,
    policies: last.policies,
  };
}

async function main(): Promise<number> {
  const { values } = parseArgs({ options: { part: { type: 'string' }, peers: { type: 'string' } } });
  const part = values.part;
  if (part !== 'keys' && part !== 'objects') throw new Error(`--part ${String(part)} is not keys or objects`);
  const peers = Number(values.peers);
  if (!Number.isInteger(peers) || peers < 1 || peers > 60000)
    throw new Error(`--peers ${values.peers} is not 1..60000`);
  // Under the daemon's memory settings, as the bench's own first plan (the runtime flags applied here).
  const code = await underDaemonMemorySettings();
  if (code !== undefined) return code;
  console.log(JSON.stringify(measure(part, peers)));
  return 0;
}

runAsMain(import.meta.url, 'cold-plan floor', main);
