// VM suite for the eBPF datapath on the guest kernels (6.1 LTS without TCX, 6.12 with it): both objects
// through the verifier, marking decisions through BPF_PROG_TEST_RUN, and the full traffic scenario of the
// host tests (real packets through veths, nftables counters as the oracle, another tool's program on the
// same device, restart rediscovery, detach, uninstall) with the attach mode the kernel supports; and a pinned
// km_ipsec_peers of the previous definition migrated at load (bpffs rename, carry-over) on this kernel.
import { mkdirSync } from 'node:fs';
import os from 'node:os';
import t from 'tap';

import { BpfDatapath } from '../../../src/datapath/bpf-datapath.js';
import { peerKey } from '../../../src/datapath/map-layout.js';
import { nativeBpf, withFd } from '../../../src/datapath/native-bpf.js';
import { kernelHasTcx, kernelSkipReason, OBJ_DIR, privateBpffsRoot } from '../../host/lib/kernel.js';
import { markingScenario } from '../../host/lib/marking-scenario.js';
import {
  arpFrame,
  frameMss,
  ipFrame,
  linuxLikeOptions,
  mssOption,
  PROTO_ESP,
  TCP_ACK,
  TCP_SYN,
  tcpChecksumOk,
  tcpFrame,
} from '../../host/lib/packets.js';
import { buildTopology, destroyTopology } from '../../host/lib/dp-topology.js';
import { runDatapathContract } from '../../host/lib/datapath-contract-run.js';

const skip = kernelSkipReason();
const hasTcx = kernelHasTcx();
const ERRNO_EINVAL = 22;

t.comment(`kernel ${os.release()}: TCX ${hasTcx ? 'available' : 'absent'}`);

t.test('programs load through this kernel’s verifier and mark in test-run', { skip }, async (t) => {
  const root = privateBpffsRoot('vmprog');
  const dp = new BpfDatapath();
  t.teardown(() => dp.uninstall().catch(() => undefined));
  await dp.load({ bpffsRoot: root, objDir: OBJ_DIR });
  const ids = dp.programIds();
  t.ok(ids.encrypt > 0 && ids.decrypt > 0, 'both programs loaded');
  await dp.setRemoteCidrs(['10.244.1.0/24', 'fd00:10:244:1::/64']);
  await dp.setPeers(new Map([['198.18.0.2', 3]]));
  const enc = (f: Buffer, mark = 0) => dp.testRun('tc_mark_encrypt', f, { mark }).then((r) => r.mark);
  const dec = (f: Buffer, mark = 0) => dp.testRun('tc_mark_decrypt', f, { mark }).then((r) => r.mark);
  t.equal(await enc(ipFrame('10.244.0.5', '10.244.1.9'), 0x4000), 0x40e0, 'IPv4 hit keeps other bits');
  t.equal(await enc(ipFrame('10.244.0.5', '10.244.2.9')), 0, 'IPv4 miss');
  t.equal(await enc(ipFrame('fd00::5', 'fd00:10:244:1::9')), 0xe0, 'IPv6 hit');
  t.equal(await enc(arpFrame(), 0x12), 0x12, 'non-IP');
  t.equal(await dec(ipFrame('198.18.0.2', '198.18.0.1', PROTO_ESP)), 0x300d0, 'ESP from a known peer');
  t.equal(await dec(ipFrame('198.18.0.7', '198.18.0.1', PROTO_ESP), 0xd0), 0, 'ESP from an unknown peer');
  t.equal(await dec(ipFrame('10.244.1.9', '10.244.0.5'), 0xd0), 0xd0, 'decrypted traffic kept');
  t.equal(await dec(ipFrame('10.9.9.9', '10.244.0.5'), 0x40d0), 0x4000, 'impersonating plaintext cleared');

  // The answers above came from the compiled CIDR index; without it the km_nodeinfo trie gives the same.
  t.match((await dp.stats()).cidrIndex, { nodes: Number, records: Number }, 'the CIDR index is installed');
  await withFd(nativeBpf().getPinned(`${root}/map/km_cidr_index`), (outer) =>
    nativeBpf().mapApply(outer, [{ key: Buffer.alloc(4) }]),
  );
  t.equal((await dp.stats()).cidrIndex, null, 'slot emptied: the trie answers');
  t.equal(await enc(ipFrame('10.244.0.5', '10.244.1.9')), 0xe0, 'IPv4 hit through km_nodeinfo');
  t.equal(await enc(ipFrame('10.244.0.5', '10.244.2.9')), 0, 'IPv4 miss through km_nodeinfo');
  t.equal(await enc(ipFrame('fd00::5', 'fd00:10:244:1::9')), 0xe0, 'IPv6 hit through km_nodeinfo');
  t.equal(await dec(ipFrame('10.9.9.9', '10.244.0.5'), 0xd0), 0, 'impersonating plaintext cleared (trie)');

  // The MSS clamp's helpers (skb load/store, l4 checksum) and its option walk on this kernel.
  await dp.setMssClamp({ ipv4: 1406, ipv6: 1366 });
  for (const [what, frame, want] of [
    ['IPv4 SYN, MSS first', tcpFrame('10.244.0.5', '10.244.1.9', { options: mssOption(1460) }), 1406],
    [
      'IPv4 SYN-ACK, MSS last',
      tcpFrame('10.244.0.5', '10.244.1.9', { flags: TCP_SYN | TCP_ACK, options: linuxLikeOptions(1460) }),
      1406,
    ],
    ['IPv6 SYN, MSS last', tcpFrame('fd00::5', 'fd00:10:244:1::9', { options: linuxLikeOptions(1440) }), 1366],
    ['IPv4 SYN to a non-remote pod', tcpFrame('10.244.0.5', '10.244.2.9', { options: mssOption(1460) }), 1460],
  ] as const) {
    const out = await dp.testRun('tc_mark_encrypt', frame);
    t.equal(frameMss(out.packet), want, `${what}: MSS ${want}`);
    t.ok(tcpChecksumOk(out.packet), `${what}: checksum valid`);
  }
});

t.test('a pinned km_ipsec_peers of the previous definition is migrated at load', { skip }, async (t) => {
  const bpf = nativeBpf();
  const root = privateBpffsRoot('vmmig');
  const dp = new BpfDatapath();
  t.teardown(() => dp.uninstall().catch(() => undefined));
  // What the previous build pinned: a preallocated hash of 8,192 entries, holding one peer.
  mkdirSync(`${root}/map`, { recursive: true });
  await withFd(
    bpf.mapCreate({ type: 1, name: 'km_ipsec_peers', keySize: 20, valueSize: 4, maxEntries: 8192 }),
    async (old) => {
      await bpf.mapApply(old, [{ key: peerKey('198.18.0.2'), value: Buffer.from([3, 0, 0, 0]) }]);
      await bpf.pinObject(old, `${root}/map/km_ipsec_peers`);
    },
  );
  const lines: string[] = [];
  await dp.load({ bpffsRoot: root, objDir: OBJ_DIR, log: (msg) => lines.push(msg) });
  t.same(lines, [
    'pinned BPF map km_ipsec_peers has a different definition in this build (max_entries 8192 -> 32768, ' +
      'flags 0x0 -> 0x1): replaced by a new map, 1 entries carried over',
  ]);
  const info = await withFd(bpf.getPinned(`${root}/map/km_ipsec_peers`), (fd) => bpf.mapInfo(fd));
  t.match(info, { maxEntries: 32768, flags: 1 });
  const esp = await dp.testRun('tc_mark_decrypt', ipFrame('198.18.0.2', '198.18.0.1', PROTO_ESP));
  t.equal(esp.mark, 0x300d0, 'the carried peer answers');
});

t.test('TCX where the kernel has it, a clear error where it does not', { skip }, async (t) => {
  const prefix = `kmt-dp-vmtcx-${process.pid}`;
  const topo = buildTopology(prefix);
  const dp = new BpfDatapath();
  t.teardown(async () => {
    await dp.uninstall().catch(() => undefined);
    destroyTopology(topo);
  });
  await dp.load({ bpffsRoot: privateBpffsRoot('vmtcx'), objDir: OBJ_DIR });
  const attempt = dp.attach('decrypt', 'kmtu0', { netns: topo.nodePath, mode: 'tcx' });
  if (hasTcx) {
    t.match(await attempt, { mode: 'tcx', ifname: 'kmtu0' });
  } else {
    await t.rejects(attempt, { errno: ERRNO_EINVAL, message: /attach TCX ingress link to kmtu0/ });
    t.same(await dp.attachments(), [], 'nothing recorded after the failure');
  }
  t.match(await dp.attach('encrypt', 'kmtpv', { netns: topo.nodePath, mode: 'clsact' }), { mode: 'clsact' });
});

t.test('marks on real traffic', { skip }, (t) =>
  markingScenario(t, { tag: 'vm', mode: 'auto', expectMode: hasTcx ? 'tcx' : 'clsact' }),
);

t.test('the fake datapath agrees with this kernel call by call (contract)', { skip }, async (t) => {
  const { real, fake } = await runDatapathContract('vmct');
  for (const [i, step] of real.entries()) t.same(fake[i], step, step.what);
});
