// The end-to-end datapath check shared by the host tests and the kernel-test VM suite: attach both programs
// in a three-namespace topology (clsact, TCX or auto), send real IPv4/IPv6/ESP/malformed traffic, and check
// every mark with nftables counters; with another tool's TC program on the same device, a daemon "restart"
// (close, new instance adopting pins), idempotent attach, detach of only ours, and uninstall.
import { rmSync } from 'node:fs';
import path from 'node:path';
import type { Test } from 'tap';

import { BpfDatapath } from '../../../src/datapath/bpf-datapath.js';
import type { AttachMode } from '../../../src/datapath/datapath.js';
import { nativeBpf, type BpfFd } from '../../../src/datapath/native-bpf.js';
import { buildTopology, destroyTopology } from './dp-topology.js';
import { compileBpf, OBJ_DIR, REPO_ROOT, run, sendFrame, sendPacket } from './kernel.js';
import { installCounters, readCounters } from './nft-counters.js';
import { PROTO_ESP, PROTO_UDP } from './packets.js';

const N = 3;
const PEER_ID = 5;

export interface ScenarioOptions {
  /** Short distinct tag for names (netns, bpffs root, temp dir). */
  tag: string;
  mode: AttachMode | 'auto';
  /** The mode 'auto' must pick on this kernel. */
  expectMode: AttachMode;
  /** Where to compile the "other tool" program; default a dir under /tmp. */
  tmpDir?: string;
}

export async function markingScenario(t: Test, opts: ScenarioOptions): Promise<void> {
  const prefix = `kmt-dp-${opts.tag}-${process.pid}`;
  const root = `/sys/fs/bpf/${prefix}`;
  const tmp = opts.tmpDir ?? `/tmp/${prefix}`;
  const bpf = nativeBpf();
  const topo = buildTopology(prefix);
  let otherLink: BpfFd | undefined;
  t.teardown(() => {
    otherLink?.close();
    destroyTopology(topo);
    rmSync(root, { recursive: true, force: true });
    rmSync(tmp, { recursive: true, force: true });
  });
  const netns = topo.nodePath;
  const mode = opts.expectMode;

  const dp1 = new BpfDatapath();
  await dp1.load({ bpffsRoot: root, objDir: OBJ_DIR });
  await dp1.setRemoteCidrs(['10.99.1.0/24', 'fd99:1::/64']);
  await dp1.setPeers(new Map([['198.18.0.2', PEER_ID]]));
  const enc = await dp1.attach('encrypt', 'kmtpv', { netns, mode: opts.mode });
  const dec = await dp1.attach('decrypt', 'kmtu0', { netns, mode: opts.mode });
  t.match(enc, { kind: 'encrypt', ifname: 'kmtpv', mode, netns });
  t.match(dec, { kind: 'decrypt', ifname: 'kmtu0', mode, netns });
  t.same(await dp1.attach('decrypt', 'kmtu0', { netns, mode: opts.mode }), dec, 'attaching again is a no-op');
  t.same(await dp1.attach('decrypt', dec.ifindex, { netns }), dec, 'by index too');
  if (mode === 'clsact') {
    const filters = run('tc', ['filter', 'show', 'dev', 'kmtu0', 'ingress'], topo.node);
    t.equal(filters.match(/ name tc_mark_decrypt /g)?.length, 1, 'exactly one filter of ours');
  }

  // Another tool's program, running before ours on the underlay device: a clsact filter in the first slot
  // (ours took an automatic priority) or a TCX link put in front of ours. Loaded through our addon rather than
  // the tc CLI, which would create its own directories under /sys/fs/bpf.
  const otherObj = compileBpf(path.join(REPO_ROOT, 'test/host/lib/other_tool.bpf.c'), tmp);
  const other = await bpf.loadObject({ path: otherObj, mapPinDir: path.join(root, 'map') });
  const otherProg = other.programs[0]!.fd;
  if (mode === 'clsact') {
    await bpf.clsactAttach({ ifindex: dec.ifindex, prog: otherProg, netns, handle: 0x77, priority: 1, label: 'kmtu0' });
  } else {
    otherLink = await bpf.tcxAttach({ ifindex: dec.ifindex, prog: otherProg, netns, label: 'kmtu0' });
  }
  for (const o of [...other.programs, ...other.maps]) o.fd.close();

  installCounters(
    topo.node,
    [
      { name: 'enc_hit4', match: 'iifname "kmtpv" ip daddr 10.99.1.5 meta mark & 0xff == 0xe0' },
      { name: 'enc_miss4', match: 'iifname "kmtpv" ip daddr 10.98.0.5 meta mark == 0' },
      { name: 'enc_hit6', match: 'iifname "kmtpv" ip6 daddr fd99:1::5 meta mark & 0xff == 0xe0' },
      { name: 'enc_miss6', match: 'iifname "kmtpv" ip6 daddr fd98::5 meta mark == 0' },
      {
        name: 'esp_peer',
        match: `iifname "kmtu0" ip saddr 198.18.0.2 ip protocol esp meta mark == 0x${PEER_ID.toString(16)}00d0`,
      },
      { name: 'esp_unknown', match: 'iifname "kmtu0" ip saddr 198.18.0.3 ip protocol esp meta mark == 0' },
      { name: 'dec_kept', match: 'iifname "kmtu0" ip saddr 10.99.1.1 udp dport 9 meta mark == 0xd0' },
      { name: 'dec_cleared', match: 'iifname "kmtu0" ip saddr 10.55.0.1 udp dport 9 meta mark == 0' },
      { name: 'impostor_passed', match: 'iifname "kmtu0" ip saddr 10.55.0.1 udp dport 9 meta mark == 0xd0' },
      { name: 'short_cleared', match: 'ether type ip meta length < 20 meta mark == 0', hook: 'ingress' },
    ],
    'kmtu0',
  );

  // The daemon goes away: nothing of ours holds a file descriptor any more; the datapath must keep working.
  dp1.close();

  const sendAll = () => {
    sendPacket(topo.pod, '10.77.0.2', '10.99.1.5', PROTO_UDP, N);
    sendPacket(topo.pod, '10.77.0.2', '10.98.0.5', PROTO_UDP, N);
    sendPacket(topo.pod, 'fd77::2', 'fd99:1::5', PROTO_UDP, N);
    sendPacket(topo.pod, 'fd77::2', 'fd98::5', PROTO_UDP, N);
    sendPacket(topo.remote, '198.18.0.2', '198.18.0.1', PROTO_ESP, N);
    sendPacket(topo.remote, '198.18.0.3', '198.18.0.1', PROTO_ESP, N);
    sendPacket(topo.remote, '10.99.1.1', '198.18.0.1', PROTO_UDP, N);
    sendPacket(topo.remote, '10.55.0.1', '198.18.0.1', PROTO_UDP, N);
    const link = JSON.parse(run('ip', ['-j', 'link', 'show', 'kmtu0'], topo.node)) as { address: string }[];
    const mac = link[0]!.address.replaceAll(':', '');
    // Ethernet header + 16 bytes: IPv4 ethertype, no room for an IP header.
    for (let i = 0; i < N; i++) sendFrame(topo.remote, 'kmtu1', `${mac}020000000002` + '0800' + '45'.padEnd(32, '0'));
  };
  sendAll();
  t.same(
    readCounters(topo.node),
    {
      enc_hit4: N,
      enc_miss4: N,
      enc_hit6: N,
      enc_miss6: N,
      esp_peer: N,
      esp_unknown: N,
      dec_kept: N,
      dec_cleared: N,
      impostor_passed: 0,
      short_cleared: N,
    },
    `marks seen by nftables after TC ingress (${mode})`,
  );

  // A new daemon process finds its attachments through the pinned registry.
  const dp2 = new BpfDatapath();
  await dp2.load({ bpffsRoot: root, objDir: OBJ_DIR });
  const found = await dp2.attachments();
  t.same(
    found.map((a) => `${a.kind}:${a.ifname}:${a.mode}:${a.netns ?? ''}`).sort(),
    [`decrypt:kmtu0:${mode}:${netns}`, `encrypt:kmtpv:${mode}:${netns}`],
    'attachments rediscovered after restart',
  );
  t.match(await dp2.stats(), { remoteCidrEntries: 2, peers: 1, attachments: 2 });

  t.equal(await dp2.detach('decrypt', 'kmtu0', { netns }), true, 'detach');
  t.equal(await dp2.detach('decrypt', 'kmtu0', { netns }), false, 'second detach finds nothing');
  if (mode === 'clsact') {
    const filters = run('tc', ['filter', 'show', 'dev', 'kmtu0', 'ingress'], topo.node);
    t.match(filters, /kmt_other_tool/, "the other tool's filter survives");
    t.notMatch(filters, /tc_mark_decrypt/, 'ours is gone');
  } else {
    t.equal(bpf.linkInfo(otherLink!).ifindex, dec.ifindex, "the other tool's TCX link survives");
  }
  sendPacket(topo.remote, '198.18.0.2', '198.18.0.1', PROTO_ESP, N);
  sendPacket(topo.remote, '10.55.0.1', '198.18.0.1', PROTO_UDP, N);
  const after = readCounters(topo.node);
  t.equal(after.esp_peer, N, 'no peer mark without our program');
  t.equal(after.impostor_passed, N, 'the other tool still runs, and nothing of ours clears its mark');

  await dp2.uninstall();
  t.same(
    await new BpfDatapath().attachments().catch((e: unknown) => String(e)),
    'Error: datapath is not loaded: call load() first',
  );
  t.notMatch(
    run('tc', ['filter', 'show', 'dev', 'kmtpv', 'ingress'], topo.node),
    /tc_mark_encrypt/,
    'uninstall detached',
  );
  t.throws(() => run('ls', [root]), /No such file/, 'uninstall removed our pins');
}
