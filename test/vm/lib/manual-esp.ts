// Hand-made ESP mesh for a topology, without any of the project's own code: the reference setup the
// baseline VM suite proves, and what later suites replace piece by piece (daemon, BPF, netlink).
// Per node i and every peer k (peer id k+1 in the mark's upper bits, see src/model/marks.ts):
//   out:  state i->k (spi, rfc4106(gcm(aes)), 36-byte key, ICV 128, tunnel mode, mark 0xe0/0xff);
//         policy podCidr_i -> podCidr_k dir out, mark 0xe0/0xff, template i->k
//   in:   state k->i with mark (peerId<<16 | 0xd0)/0xffff00ff and output-mark 0xd0/0xffff00ff;
//         policies podCidr_k -> podCidr_i dir in and fwd, mark 0xd0/0xff, template k->i
//   tc:   clsact on every pod's host veth: u32 dst podCidr_k -> skbedit mark 0xe0 (encrypt mark);
//         clsact on the underlay device: u32 protocol 50 (ESP) src underlay_k -> skbedit mark
//         (peerId<<16 | 0xd0) (decrypt mark; left out when decryptMark is false, to break the setup).
//         u32, not flower: flower on 6.1 never matched ESP packets by ip_proto (measured in the VM).
import { randomBytes } from 'node:crypto';
import {
  inboundEspMark,
  MARK_DECRYPT,
  MARK_ENCRYPT,
  MARK_INBOUND_MASK,
  MARK_TYPE_MASK,
} from '../../../src/model/marks.js';
import { execOk } from './netns.js';
import type { NodePlan, TopologyPlan } from './topology.js';

export const AEAD_ALGO = 'rfc4106(gcm(aes))';
const AEAD_KEY_BYTES = 36;
const AEAD_ICV_BITS = 128;
const REQID = 1;

const hex = (n: number): string => `0x${n.toString(16)}`;

/** A fresh random 36-byte key for every ordered node pair, keyed `i->k`. */
export function randomPairKeys(plan: TopologyPlan): Map<string, Buffer> {
  const keys = new Map<string, Buffer>();
  for (const a of plan.nodes)
    for (const b of plan.nodes) if (a !== b) keys.set(`${a.index}->${b.index}`, randomBytes(AEAD_KEY_BYTES));
  return keys;
}

export interface ManualEspOptions {
  spi: number;
  keys: ReadonlyMap<string, Buffer>;
  /** Whether the underlay gets the decrypt-mark filters (false reproduces a broken datapath). */
  decryptMark: boolean;
}

function keyFor(keys: ReadonlyMap<string, Buffer>, from: NodePlan, to: NodePlan): string {
  const key = keys.get(`${from.index}->${to.index}`);
  if (key?.length !== AEAD_KEY_BYTES) throw new Error(`no ${AEAD_KEY_BYTES}-byte key for ${from.index}->${to.index}`);
  return `0x${key.toString('hex')}`;
}

const inMark = (peer: NodePlan): number => inboundEspMark(peer.index + 1);

/** `ip -batch` lines (XFRM states and policies) for one node of the mesh (pure). */
export function manualXfrmBatch(plan: TopologyPlan, node: NodePlan, options: ManualEspOptions): string[] {
  const lines: string[] = [];
  for (const peer of plan.nodes) {
    if (peer === node) continue;
    const tmplOut = `tmpl src ${node.underlayIp} dst ${peer.underlayIp} proto esp spi ${hex(options.spi)} reqid ${REQID} mode tunnel`;
    const tmplIn = `tmpl src ${peer.underlayIp} dst ${node.underlayIp} proto esp reqid ${REQID} mode tunnel`;
    lines.push(
      `xfrm state add src ${node.underlayIp} dst ${peer.underlayIp} proto esp spi ${hex(options.spi)} reqid ${REQID} mode tunnel ` +
        `aead ${AEAD_ALGO} ${keyFor(options.keys, node, peer)} ${AEAD_ICV_BITS} mark ${hex(MARK_ENCRYPT)} mask ${hex(MARK_TYPE_MASK)}`,
      `xfrm state add src ${peer.underlayIp} dst ${node.underlayIp} proto esp spi ${hex(options.spi)} reqid ${REQID} mode tunnel ` +
        `aead ${AEAD_ALGO} ${keyFor(options.keys, peer, node)} ${AEAD_ICV_BITS} ` +
        `mark ${hex(inMark(peer))} mask ${hex(MARK_INBOUND_MASK)} output-mark ${hex(MARK_DECRYPT)} mask ${hex(MARK_INBOUND_MASK)}`,
      `xfrm policy add src ${node.podCidr} dst ${peer.podCidr} dir out mark ${hex(MARK_ENCRYPT)} mask ${hex(MARK_TYPE_MASK)} ${tmplOut}`,
      `xfrm policy add src ${peer.podCidr} dst ${node.podCidr} dir in mark ${hex(MARK_DECRYPT)} mask ${hex(MARK_TYPE_MASK)} ${tmplIn}`,
      `xfrm policy add src ${peer.podCidr} dst ${node.podCidr} dir fwd mark ${hex(MARK_DECRYPT)} mask ${hex(MARK_TYPE_MASK)} ${tmplIn}`,
    );
  }
  return lines;
}

/** `tc -batch` lines (clsact and mark filters) for one node of the mesh (pure). */
export function manualTcBatch(
  plan: TopologyPlan,
  node: NodePlan,
  options: Pick<ManualEspOptions, 'decryptMark'>,
): string[] {
  const lines: string[] = [];
  for (const pod of node.pods) {
    lines.push(`qdisc add dev ${pod.hostVeth} clsact`);
    for (const peer of plan.nodes) {
      if (peer === node) continue;
      lines.push(
        `filter add dev ${pod.hostVeth} ingress protocol ip prio 10 u32 match ip dst ${peer.podCidr} action skbedit mark ${hex(MARK_ENCRYPT)}`,
      );
    }
  }
  lines.push(`qdisc add dev ${node.underlayDev} clsact`);
  if (options.decryptMark) {
    for (const peer of plan.nodes) {
      if (peer === node) continue;
      lines.push(
        `filter add dev ${node.underlayDev} ingress protocol ip prio 10 u32 match ip protocol 50 0xff match ip src ${peer.underlayIp}/32 ` +
          `action skbedit mark ${hex(inMark(peer))}`,
      );
    }
  }
  return lines;
}

/** Installs the hand-made mesh on every node of the topology. */
export async function installManualEsp(plan: TopologyPlan, options: ManualEspOptions): Promise<void> {
  for (const node of plan.nodes) {
    await execOk(undefined, ['ip', '-n', node.netns, '-batch', '-'], {
      input: `${manualXfrmBatch(plan, node, options).join('\n')}\n`,
    });
    await execOk(undefined, ['tc', '-n', node.netns, '-batch', '-'], {
      input: `${manualTcBatch(plan, node, options).join('\n')}\n`,
    });
  }
}
