// DatapathPort over the Datapath module (src/datapath): loads (or adopts) the pinned programs and maps once,
// then each sync makes attachments, km_ipsec_peers and km_nodeinfo match the desired state by difference.
// Order within a sync never opens a plaintext window: decrypt attachments and peer ids first, remote CIDRs
// next, then the managed local pods, the pod-CIDR peer ids and the strict mode (km_local_pods, km_pod_peers,
// km_ipsec_config), then the MSS clamp, encrypt attachments last; detaches happen after the adds. Each sync
// also reads the plaintext counters (km_plaintext) for the status.
// `admit` runs before an XFRM step writes a new peer's SAs and policies: it adds the peer's ids and pod CIDRs to
// what the last sync wrote. Written after them, the decrypt program would meanwhile leave the peer's ESP without
// its inbound mark (no SA found) and clear 0xd0 on what its SA decrypted (no policy found): the peer already
// sends once it sees our advertised SPI, so its packets were dropped for a whole step (XfrmInNoPols in the VM).
// A pod CIDR admitted early also makes the encrypt program mark traffic to the peer a moment before its outbound
// SA exists: that traffic meets the catch-all block policy, never the wire in clear.
import fs from 'node:fs/promises';
import type { CidrIndexUse, Datapath, PlaintextCount } from '../datapath/datapath.js';
import type { Attachment, DatapathDesired, DatapathPort, DatapathReport, PeerAddressId } from './ports.js';
import { firstLine } from '../util/first-line.js';

/** Pinned objects (anything but directories) under `root`; undefined when `root` does not exist. */
async function countPins(root: string): Promise<number | undefined> {
  try {
    const entries = await fs.readdir(root, { recursive: true, withFileTypes: true });
    return entries.filter((e) => !e.isDirectory()).length;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

export class DatapathAdapter implements DatapathPort {
  private loaded = false;
  /** km_ipsec_peers and the remote CIDRs as last written by sync or admit (undefined: not written yet). */
  private written: { peerIds: ReadonlyMap<string, number>; remoteCidrs: Set<string> } | undefined;

  constructor(
    private readonly dp: Datapath,
    private readonly bpffsRoot: string,
    /** Hears of pinned maps of an earlier build replaced at load (LoadOptions.log). */
    private readonly log?: (msg: string, fields: Record<string, unknown>) => void,
  ) {}

  private async ensureLoaded(): Promise<void> {
    if (this.loaded) return;
    await this.dp.load({ bpffsRoot: this.bpffsRoot, ...(this.log ? { log: this.log } : {}) });
    this.loaded = true;
  }

  async sync(desired: DatapathDesired): Promise<DatapathReport> {
    const errors: string[] = [];
    await this.ensureLoaded();
    const before = await this.dp.attachments();
    const has = (kind: 'encrypt' | 'decrypt', ifname: string): boolean =>
      before.some((a) => a.kind === kind && a.ifname === ifname && a.netns === undefined);
    const attach = async (kind: 'encrypt' | 'decrypt', name: string, ifindex: number): Promise<void> => {
      if (has(kind, name)) return;
      try {
        await this.dp.attach(kind, ifindex);
      } catch (err) {
        errors.push(`attach tc_mark_${kind} to ${name}: ${firstLine(err)}`);
      }
    };
    for (const i of desired.decrypt) await attach('decrypt', i.name, i.ifindex);
    errors.push(...(await this.writePeers(desired.peerIds, desired.remoteCidrs)));
    const writes: [string, (() => Promise<unknown>) | undefined][] = [
      ['km_local_pods', desired.localPods && (() => this.dp.setLocalPods(desired.localPods ?? []))],
      ['km_pod_peers', desired.podPeers && (() => this.dp.setPodPeers(desired.podPeers ?? new Map()))],
      ['km_ipsec_config (strict mode)', desired.strict && (() => this.dp.setStrictMode(desired.strict ?? 'off'))],
    ];
    for (const [what, write] of writes) {
      if (!write) continue;
      try {
        await write();
      } catch (err) {
        errors.push(`${what}: ${firstLine(err)}`);
      }
    }
    if (desired.mssClamp) {
      // Before the encrypt attachments: a new pod's first SYN is already clamped.
      try {
        await this.dp.setMssClamp(desired.mssClamp);
      } catch (err) {
        errors.push(`km_ipsec_config: ${firstLine(err)}`);
      }
    }
    for (const i of desired.encrypt) await attach('encrypt', i.name, i.ifindex);
    const want = new Set([
      ...desired.encrypt.map((i) => `encrypt/${i.name}`),
      ...desired.decrypt.map((i) => `decrypt/${i.name}`),
    ]);
    for (const a of before) {
      if (a.netns !== undefined || want.has(`${a.kind}/${a.ifname}`)) continue;
      try {
        await this.dp.detach(a.kind, a.ifindex);
      } catch (err) {
        // The interface may be gone with its pod (and the attachment with it): not an error then.
        const after = await this.dp.attachments();
        if (after.some((x) => x.kind === a.kind && x.ifindex === a.ifindex)) {
          errors.push(`detach tc_mark_${a.kind} from ${a.ifname}: ${firstLine(err)}`);
        }
      }
    }
    const attachments: Attachment[] = (await this.dp.attachments())
      .filter((a) => a.netns === undefined)
      .map((a) => ({ ifname: a.ifname, program: a.kind }))
      .sort((x, y) => `${x.program}/${x.ifname}`.localeCompare(`${y.program}/${y.ifname}`));
    let cidrIndex: CidrIndexUse | null = null;
    try {
      cidrIndex = await this.dp.cidrIndexUse();
    } catch (err) {
      errors.push(`km_cidr_index: ${firstLine(err)}`);
    }
    let plaintext: PlaintextCount[] = [];
    try {
      plaintext = await this.dp.plaintext();
    } catch (err) {
      errors.push(`km_plaintext: ${firstLine(err)}`);
    }
    return { attachments, cidrIndex, plaintext, errors };
  }

  async admit(peerIds: readonly PeerAddressId[], remoteCidrs: readonly string[]): Promise<string[]> {
    const last = this.written;
    const peersNew = last === undefined || peerIds.some((p) => last.peerIds.get(p.address) !== p.peerId);
    const cidrsNew = last === undefined || remoteCidrs.some((c) => !last.remoteCidrs.has(c));
    if (!peersNew && !cidrsNew) return [];
    try {
      await this.ensureLoaded();
    } catch (err) {
      // Reported, never thrown: the XFRM step goes on (the sync after it tries the load again and reports it).
      return [`load: ${firstLine(err)}`];
    }
    const ids = new Map(last?.peerIds);
    const planned = new Map(peerIds.map((p) => [p.address, p.peerId]));
    // An id given to another address now (a peer's new address, or a freed id reused) leaves its old address.
    const taken = new Set(planned.values());
    for (const [address, id] of ids) if (taken.has(id) && planned.get(address) !== id) ids.delete(address);
    planned.forEach((id, address) => ids.set(address, id));
    const cidrs = new Set(last?.remoteCidrs);
    for (const c of remoteCidrs) cidrs.add(c);
    return this.writePeers(ids, [...cidrs].sort());
  }

  /** km_ipsec_peers, then km_nodeinfo (and its index): one line per failed write. */
  private async writePeers(peerIds: ReadonlyMap<string, number>, remoteCidrs: readonly string[]): Promise<string[]> {
    const errors: string[] = [];
    try {
      await this.dp.setPeers(peerIds);
    } catch (err) {
      errors.push(`km_ipsec_peers: ${firstLine(err)}`);
    }
    try {
      await this.dp.setRemoteCidrs(remoteCidrs);
    } catch (err) {
      errors.push(`km_nodeinfo: ${firstLine(err)}`);
    }
    // After a failed write nothing is assumed: the next admit writes again (the sync always does). The map is kept
    // as given, not copied (a fresh one every step, never written to after: the step's result or admit's own).
    this.written = errors.length === 0 ? { peerIds, remoteCidrs: new Set(remoteCidrs) } : undefined;
    return errors;
  }

  /**
   * Detaches our TC programs and removes our pins; returns what was there. Without a pin directory nothing of
   * ours exists on this bpffs: nothing is loaded, and no directory (not even a missing --bpf-fs-path) is made.
   */
  async uninstall(): Promise<string[]> {
    const pins = await countPins(this.bpffsRoot);
    if (pins === undefined) return [];
    try {
      await this.dp.load({ bpffsRoot: this.bpffsRoot });
    } catch {
      // Nothing loadable: there may still be pins to remove, which uninstall handles.
    }
    const removed = (await this.dp.attachments()).map((a) => `tc_mark_${a.kind} on ${a.ifname}`);
    await this.dp.uninstall();
    return [...removed, ...(pins > 0 ? [`${pins} pins under ${this.bpffsRoot}`] : [])];
  }
}
