// Test fixtures for the IPsec core: node and key builders, a simulated cluster of nodes (each with its own
// fake XFRM kernel and controller, publishing KmeshNodeInfo to each other), and a path checker that walks
// a packet from one node's pod through its out policy and outbound SA to the peer's inbound SA and fwd
// policy, the way the kernel would, so tests can assert "no pair ever loses connectivity".

import { KeyHistory } from '../../src/keys/key-history.js';
import { inboundEspMark, MARK_DECRYPT, MARK_ENCRYPT } from '../../src/model/marks.js';
import type { IpsecKey, NodeInfo } from '../../src/model/node.js';
import { cidrsOverlap, parseCidrLenient } from '../../src/model/ip-address.js';
import { IpsecController, type ControllerOptions, type StepReport } from '../../src/ipsec/node-controller.js';
import { lookupHits, stateBucket } from '../../src/xfrm/identity.js';
import { FakeXfrmKernel } from './fake-xfrm-kernel.js';
import type { XfrmPolicy, XfrmState } from '../../src/xfrm/types.js';

export function bootId(n: number, generation = 0): string {
  return `00000000-0000-4000-8000-${(generation * 0x10000 + n).toString(16).padStart(12, '0')}`;
}

export function makeNode(i: number, extra: Partial<NodeInfo> = {}): NodeInfo {
  return {
    name: `node-${String(i).padStart(2, '0')}`,
    spi: 1,
    addresses: [`198.18.0.${i}`],
    bootID: bootId(i),
    podCIDRs: [`10.244.${i}.0/24`],
    ...extra,
  };
}

export function makeKey(spi: number): IpsecKey {
  const key = Buffer.alloc(36);
  for (let i = 0; i < 36; i++) key[i] = (spi * 31 + i * 7) & 0xff;
  return { spi, aeadKeyName: 'rfc4106(gcm(aes))', key, icvBits: 128 };
}

function containsAddress(cidr: string, ip: string): boolean {
  const net = parseCidrLenient(cidr);
  const host = parseCidrLenient(`${ip}/${ip.includes(':') ? 128 : 32}`);
  return net !== undefined && host !== undefined && cidrsOverlap(net, host);
}

function bestPolicy(
  policies: XfrmPolicy[],
  dir: 'out' | 'fwd',
  mark: number,
  src: string,
  dst: string,
): XfrmPolicy | undefined {
  return policies
    .filter(
      (p) =>
        p.dir === dir &&
        (mark & (p.mark?.mask ?? 0)) >>> 0 === (p.mark?.value ?? 0) &&
        containsAddress(p.selector.src, src) &&
        containsAddress(p.selector.dst, dst),
    )
    .sort((a, b) => a.priority - b.priority)[0];
}

export interface SimNode {
  info: NodeInfo;
  kernel: FakeXfrmKernel;
  /** Owns the node's key history (giveKey adds to it, restart restores it from `persisted`). */
  controller: IpsecController;
  /** What this node's KmeshNodeInfo says (undefined until first publish). */
  published: NodeInfo | undefined;
  /** The JSON the daemon would persist. */
  persisted: unknown;
  last?: StepReport;
  /** SPIs its KmeshNodeInfo status reports sending with (SimCluster `reports` on; undefined: nothing yet). */
  sending?: number[];
  /**
   * Its view of the cluster is frozen (watch stalled): it steps against this snapshot of peers and reports; with
   * `writesCut` its API access is cut too and nothing it publishes reaches the others.
   */
  frozen?: { peers: NodeInfo[]; reports: Map<string, number[]>; writesCut: boolean };
}

/**
 * Walks a packet from a pod of `from` to a pod of `to`: out policy (highest priority match for mark 0xe0),
 * its template's outbound SA, then at the receiver the inbound SA hit by the peer-id mark with the same SPI
 * (key bytes must match), and the fwd policy for mark 0xd0 whose template accepts the SA. Returns '' when the
 * packet would be delivered encrypted, else why not.
 */
export function pathProblem(from: SimNode, to: SimNode): string {
  const src = from.info.podCIDRs[0]!.replace(/0\/\d+$/, '5');
  const dst = to.info.podCIDRs[0]!.replace(/0\/\d+$/, '5');
  const out = bestPolicy(from.kernel.listPolicies(), 'out', MARK_ENCRYPT, src, dst);
  if (!out) return `${from.info.name}: no out policy for ${dst} (plaintext leak)`;
  if (out.action === 'block') return `${from.info.name}: blocked towards ${dst}`;
  const tmpl = out.templates[0]!;
  const sa = from.kernel
    .listStates()
    .find(
      (s) =>
        s.dst === tmpl.dst &&
        s.src === tmpl.src &&
        s.spi === tmpl.spi &&
        s.reqid === tmpl.reqid &&
        lookupHits(MARK_ENCRYPT, s),
    );
  if (!sa) return `${from.info.name}: no outbound SA spi ${tmpl.spi} to ${tmpl.dst}`;
  const peerId = to.last?.peerAddressIds.find((p) => p.address === sa.src)?.peerId;
  if (peerId === undefined) return `${to.info.name}: no peer id for ${sa.src}`;
  const mark = inboundEspMark(peerId);
  const inbound: XfrmState | undefined = to.kernel
    .listStates()
    .find((s) => stateBucket(s) === stateBucket(sa) && lookupHits(mark, s));
  if (!inbound) return `${to.info.name}: no inbound SA spi ${sa.spi} from ${sa.src}`;
  if (!inbound.aead || !sa.aead || !inbound.aead.key.equals(sa.aead.key))
    return `${to.info.name}: key mismatch on spi ${sa.spi}`;
  if (inbound.src !== sa.src) return `${to.info.name}: inbound SA spi ${sa.spi} expects source ${inbound.src}`;
  const decryptedMark = ((mark & ~(inbound.outputMark?.mask ?? 0)) | (inbound.outputMark?.value ?? 0)) >>> 0;
  if (decryptedMark !== MARK_DECRYPT) return `${to.info.name}: decrypted mark is 0x${decryptedMark.toString(16)}`;
  const fwd = bestPolicy(to.kernel.listPolicies(), 'fwd', decryptedMark, src, dst);
  const accepts = fwd?.templates.some(
    (t) => t.src === sa.src && t.dst === sa.dst && t.reqid === sa.reqid && (t.spi === 0 || t.spi === sa.spi),
  );
  if (!accepts) return `${to.info.name}: no fwd policy accepting ${src} via ${sa.src}`;
  return '';
}

export class SimCluster {
  readonly nodes = new Map<string, SimNode>();
  now = 0;

  /** With `reports`, nodes publish the SPIs they send with (the KmeshNodeInfo status) and read each other's. */
  constructor(
    private readonly options: Partial<ControllerOptions> = { graceMs: 1000 },
    private readonly sim: { reports?: boolean } = {},
  ) {}

  private liveReports(except: SimNode): Map<string, number[]> {
    const out = new Map<string, number[]>();
    for (const n of this.nodes.values()) if (n !== except && n.sending) out.set(n.info.name, n.sending);
    return out;
  }

  /** Freezes `name`'s view of the cluster as it is now (writesCut: its own writes stop reaching the API too). */
  freeze(name: string, writesCut = false): void {
    const node = this.get(name);
    const peers = [...this.nodes.values()].flatMap((n) => (n !== node && n.published ? [n.published] : []));
    node.frozen = { peers, reports: this.liveReports(node), writesCut };
  }

  thaw(name: string): void {
    delete this.get(name).frozen;
  }

  add(info: NodeInfo, keys: KeyHistory = KeyHistory.of([makeKey(1)])): SimNode {
    const kernel = new FakeXfrmKernel();
    const node: SimNode = {
      info,
      kernel,
      controller: this.controllerWith(kernel, keys),
      published: undefined,
      persisted: keys.toJSON(),
    };
    this.nodes.set(info.name, node);
    return node;
  }

  private controllerWith(kernel: FakeXfrmKernel, keys: KeyHistory): IpsecController {
    const controller = new IpsecController(kernel, this.options);
    for (const key of keys.keys()) controller.addKey(key);
    return controller;
  }

  get(name: string): SimNode {
    const node = this.nodes.get(name);
    if (!node) throw new Error(`no node ${name}`);
    return node;
  }

  remove(name: string): void {
    this.nodes.delete(name);
  }

  /** Delivers a new key version to one node (its secret file changed). */
  giveKey(name: string, spi: number): void {
    const node = this.get(name);
    node.controller.addKey(makeKey(spi));
    node.persisted = node.controller.keys.toJSON();
  }

  /** The daemon of `name` restarts: new controller, key history read back from its persisted file. */
  restart(name: string): void {
    const node = this.get(name);
    const saved = KeyHistory.fromJSON(JSON.parse(JSON.stringify(node.persisted)));
    node.controller = this.controllerWith(node.kernel, saved);
  }

  /** The machine of `name` reboots: empty kernel, new boot ID, new controller, history from its file. */
  reboot(name: string, generation: number): void {
    const node = this.get(name);
    node.kernel = new FakeXfrmKernel();
    node.info = { ...node.info, bootID: bootId(Number(node.info.addresses[0]!.split('.')[3]), generation) };
    node.published = undefined;
    this.restart(name);
  }

  async step(name: string): Promise<StepReport> {
    const node = this.get(name);
    const peers =
      node.frozen?.peers ?? [...this.nodes.values()].flatMap((n) => (n !== node && n.published ? [n.published] : []));
    const report = await node.controller.step({
      local: { ...node.info, spi: node.published?.spi ?? 0 },
      peers,
      now: this.now,
      ...(this.sim.reports ? { peerReports: node.frozen?.reports ?? this.liveReports(node) } : {}),
    });
    node.last = report;
    node.persisted = node.controller.keys.toJSON();
    if (node.frozen?.writesCut) return report;
    if (report.advertiseSpi !== undefined) node.published = { ...node.info, spi: report.advertiseSpi };
    if (this.sim.reports) {
      node.sending = [
        ...new Set(report.peers.flatMap((p) => (p.planned && p.sendSpi !== undefined ? [p.sendSpi] : []))),
      ];
    }
    return report;
  }

  async stepAll(): Promise<StepReport[]> {
    const reports: StepReport[] = [];
    for (const name of [...this.nodes.keys()].sort()) reports.push(await this.step(name));
    return reports;
  }

  /** Every problem between published nodes, as lines; [] when every ordered pair would get through encrypted. */
  problems(): string[] {
    const published = [...this.nodes.values()].filter((n) => n.published);
    const out: string[] = [];
    for (const a of published) {
      for (const b of published) {
        if (a === b) continue;
        // Only pairs that know each other: a has stepped since b published and vice versa.
        const problem = pathProblem(a, b);
        if (problem) out.push(`${a.info.name} -> ${b.info.name}: ${problem}`);
      }
    }
    return out;
  }

  spisInKernel(name: string): number[] {
    return [
      ...new Set(
        this.get(name)
          .kernel.listStates()
          .map((s) => s.spi),
      ),
    ].sort((a, b) => a - b);
  }
}
