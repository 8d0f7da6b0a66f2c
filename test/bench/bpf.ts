// npm run bench:bpf — nanoseconds per packet of tc_mark_encrypt (IPv4/IPv6, hit/miss) with 1,000 and 10,000
// remote CIDRs, next to an empty TC program (tc_noop) measured in the same run, through BPF_PROG_TEST_RUN (the kernel
// times `repeat` runs and reports the mean). Two CIDR layouts: "cluster" (per-node slices of one cluster range,
// as Kubernetes allocates them) and "scattered" (unrelated /24s and /64s, so the index shares little and walks
// its deepest paths). Misses are chosen to fail as deep as possible. Each layout is measured as deployed (the
// compiled km_cidr_index that setRemoteCidrs installs) and on the km_nodeinfo LPM-trie fallback (index slot
// emptied), for comparison. Figures are medians of several rounds, interleaved so that machine noise hits every
// program alike. The last line gives the deployed path's worst marginal cost over the no-op (both layouts) and
// the ratio, for 1,000 CIDRs (target <= 25 ns) and for 10,000 (the same layouts ten times larger; target
// <= 10 ns). Then the MSS clamp on the hit path (cluster layout, as deployed): a UDP hit, a TCP ACK hit (the
// non-SYN hit path: one protocol and one flags check more than UDP), SYNs whose MSS is already at the clamp
// (the option walk without a rewrite; MSS first as Linux sends it, and last behind NOP NOP TS SACK-permitted WS),
// each timed over `repeat` runs; and a SYN whose MSS is rewritten (store + checksum fix), which test-run can
// time only one run at a time (the first run rewrites the packet it then keeps), as the median of single runs
// next to the no-op's median of single runs. Needs root.
import { rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { parseIpStrict, parseCidrStrict, prefixMatches } from '../../src/model/ip-address.js';
import { BpfDatapath } from '../../src/datapath/bpf-datapath.js';
import { nativeBpf, withFd, type BpfFd, type NativeBpf } from '../../src/datapath/native-bpf.js';
import { packageRoot } from '../../src/native/addon.js';
import { rng } from '../fakes/cidr-samples.js';
import { ipFrame, linuxLikeOptions, mssOption, TCP_ACK, tcpFrame } from '../host/lib/packets.js';
import { median } from './median.js';

const ROUNDS = Number(process.env.KMESH_BENCH_ROUNDS ?? 7);
const REPEAT = Number(process.env.KMESH_BENCH_REPEAT ?? 200_000);
const TARGET_NS = 25;
/** Issue 15: the 10,000-CIDR layouts' worst marginal cost. */
const TARGET_10K_NS = 10;

interface Layout {
  name: string;
  cidrs: string[];
  /** Destinations: inside a CIDR (hit) and outside all of them but sharing as many leading bits as possible. */
  v4Hit: string;
  v4Miss: string;
  v6Hit: string;
  v6Miss: string;
}

/**
 * 80 % IPv4 /24 and 20 % IPv6 /64 slices of one cluster range each, as a large cluster would have: 1,000 CIDRs
 * (800 + 200) or 10,000 (8,000 + 2,000, the CIDRs of a 5,000-node dual-stack cluster and then some).
 */
function clusterLayout(total = 1000): Layout {
  const v4 = (total * 4) / 5;
  const lastV4 = v4 - 1;
  return {
    name: total === 1000 ? 'cluster' : `cluster ${total}`,
    cidrs: [
      ...Array.from({ length: v4 }, (_, i) => `10.${64 + (i >> 8)}.${i & 255}.0/24`),
      ...Array.from({ length: total - v4 }, (_, i) => `fd00:10:${(i + 1).toString(16)}::/64`),
    ],
    v4Hit: '10.66.17.9',
    // The last remote /16 holds 10.x.0-(lastV4 & 255): fails at the third byte.
    v4Miss: `10.${64 + (lastV4 >> 8)}.200.9`,
    v6Hit: 'fd00:10:a7::9',
    v6Miss: 'fd00:10:a7:1::9', // fails at the eighth byte, the last of the /64
  };
}

/** 80 % IPv4 /24 anywhere in 1-223.x.x and 20 % IPv6 /64 anywhere in fd00::/8, from a fixed seed. */
function scatteredLayout(total = 1000): Layout {
  const rnd = rng(2026);
  const v4 = new Set<string>();
  while (v4.size < (total * 4) / 5) v4.add(`${1 + rnd(223)}.${rnd(256)}.${rnd(256)}.0/24`);
  const v6 = new Set<string>();
  const group = (): string => rnd(0x10000).toString(16);
  while (v6.size < total / 5)
    v6.add(`fd${rnd(256).toString(16).padStart(2, '0')}:${group()}:${group()}:${group()}::/64`);
  const cidrs = [...v4, ...v6];
  const parsed = cidrs.map((c) => parseCidrStrict(c));
  const inside = (a: string): boolean => {
    const p = parseIpStrict(a);
    return parsed.some((c) => c.family === p.family && prefixMatches(c.bytes, p.bytes, c.prefixLen));
  };
  const [a, b, c] = [...v4][0]!.split('.');
  let v4Miss = '';
  for (let third = 0; third < 256 && !v4Miss; third++) {
    const candidate = `${a}.${b}.${third}.1`;
    if (!inside(candidate)) v4Miss = candidate; // shares the CIDR's first two bytes
  }
  const v6First = [...v6][0]!.replace('::/64', '');
  const groups = v6First.split(':');
  groups[3] = (parseInt(groups[3]!, 16) ^ 1).toString(16); // differs in the /64's last bit
  const v6Miss = `${groups.join(':')}::9`;
  if (inside(v6Miss) || !v4Miss) throw new Error('scattered layout: no deep miss found');
  const name = total === 1000 ? 'scattered' : `scattered ${total}`;
  return { name, cidrs, v4Hit: `${a}.${b}.${c}.9`, v4Miss, v6Hit: `${v6First}::9`, v6Miss };
}

interface Figures {
  base: number;
  cases: { name: string; ns: number }[];
}

async function measure(bpf: NativeBpf, dp: BpfDatapath, noop: BpfFd, layout: Layout): Promise<Figures> {
  const cases = [
    { name: 'IPv4 hit', frame: ipFrame('192.0.2.5', layout.v4Hit), hit: true },
    { name: 'IPv4 miss', frame: ipFrame('192.0.2.5', layout.v4Miss), hit: false },
    { name: 'IPv6 hit', frame: ipFrame('2001:db8::5', layout.v6Hit), hit: true },
    { name: 'IPv6 miss', frame: ipFrame('2001:db8::5', layout.v6Miss), hit: false },
  ];
  const noopRuns: number[] = [];
  const runs = cases.map(() => [] as number[]);
  for (let r = 0; r < ROUNDS; r++) {
    noopRuns.push((await bpf.testRun(noop, { packet: cases[0]!.frame, repeat: REPEAT })).durationNs);
    for (const [i, c] of cases.entries()) {
      const out = await dp.testRun('tc_mark_encrypt', c.frame, { repeat: REPEAT });
      if ((out.mark === 0xe0) !== c.hit) throw new Error(`${layout.name} ${c.name}: mark ${out.mark}`);
      runs[i]!.push(out.durationNs);
    }
  }
  return { base: median(noopRuns), cases: cases.map((c, i) => ({ name: c.name, ns: median(runs[i]!) })) };
}

const SINGLE_RUNS = Number(process.env.KMESH_BENCH_SINGLE_RUNS ?? 3000);

/** The MSS clamp's cost on the hit path (see the header). Prints its lines. */
async function measureMssClamp(bpf: NativeBpf, dp: BpfDatapath, noop: BpfFd, layout: Layout): Promise<void> {
  await dp.setMssClamp({ ipv4: 1406, ipv6: 1366 });
  const src = '192.0.2.5';
  const dst = layout.v4Hit;
  const cases = [
    { name: 'IPv4 hit, UDP', frame: ipFrame(src, dst) },
    { name: 'IPv4 hit, TCP ACK', frame: tcpFrame(src, dst, { flags: TCP_ACK, payloadLen: 64 }) },
    { name: 'IPv4 SYN, MSS first', frame: tcpFrame(src, dst, { options: mssOption(1406) }) },
    { name: 'IPv4 SYN, MSS last', frame: tcpFrame(src, dst, { options: linuxLikeOptions(1406) }) },
  ];
  const noopRuns: number[] = [];
  const runs = cases.map(() => [] as number[]);
  for (let r = 0; r < ROUNDS; r++) {
    noopRuns.push((await bpf.testRun(noop, { packet: cases[0]!.frame, repeat: REPEAT })).durationNs);
    for (const [i, c] of cases.entries()) {
      const out = await dp.testRun('tc_mark_encrypt', c.frame, { repeat: REPEAT });
      if (out.mark !== 0xe0 || !out.packet.equals(c.frame)) throw new Error(`MSS ${c.name}: not a plain hit`);
      runs[i]!.push(out.durationNs);
    }
  }
  const base = median(noopRuns);
  console.log(`# MSS clamp on the hit path (${layout.name} layout, as deployed), ${ROUNDS} rounds x ${REPEAT} runs`);
  console.log(`${'  tc_noop (baseline)'.padEnd(30)} ${base.toFixed(0).padStart(4)} ns/packet`);
  for (const [i, c] of cases.entries()) {
    const ns = median(runs[i]!);
    console.log(
      `  ${`encrypt ${c.name}`.padEnd(28)} ${ns.toFixed(0).padStart(4)} ns/packet  (+${(ns - base).toFixed(0)} ns)`,
    );
  }
  const syn = tcpFrame(src, dst, { options: mssOption(1460) });
  const single: number[] = [];
  const singleNoop: number[] = [];
  for (let r = 0; r < SINGLE_RUNS; r++) {
    singleNoop.push((await bpf.testRun(noop, { packet: syn, repeat: 1 })).durationNs);
    const out = await dp.testRun('tc_mark_encrypt', syn, { repeat: 1 });
    if (out.packet.equals(syn)) throw new Error('MSS rewrite: the SYN was not clamped');
    single.push(out.durationNs);
  }
  const rewrite = median(single);
  const singleBase = median(singleNoop);
  console.log(
    `  ${'encrypt IPv4 SYN, rewritten'.padEnd(28)} ${rewrite.toFixed(0).padStart(4)} ns/packet  (+${(rewrite - singleBase).toFixed(0)} ns ` +
      `over the no-op's ${singleBase.toFixed(0)} ns; medians of ${SINGLE_RUNS} single runs)`,
  );
}

async function emptyIndexSlot(bpf: NativeBpf, root: string): Promise<void> {
  await withFd(bpf.getPinned(path.join(root, 'map', 'km_cidr_index')), (outer) =>
    bpf.mapApply(outer, [{ key: Buffer.alloc(4) }]),
  );
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('bench:bpf needs root (BPF_PROG_TEST_RUN)');
  const root = `/sys/fs/bpf/kmt-dp-bench-${process.pid}`;
  const objDir = path.join(packageRoot(), 'build-bpf');
  const bpf = nativeBpf();
  const dp = new BpfDatapath(bpf);
  let noop: BpfFd | undefined;
  try {
    await dp.load({ bpffsRoot: root, objDir });
    const loaded = await bpf.loadObject({ path: path.join(objDir, 'tc_noop.o'), mapPinDir: path.join(root, 'map') });
    noop = loaded.programs[0]!.fd;
    for (const m of loaded.maps) m.fd.close();

    const load = os.loadavg().map((l) => l.toFixed(2));
    console.log(
      `tc_mark_encrypt vs tc_noop, 1000 remote CIDRs per layout, then 10,000; ${ROUNDS} rounds x ${REPEAT} runs; ` +
        `load average ${load.join(' ')}, ${os.cpus().length} CPUs`,
    );
    // Worst marginal cost over the no-op (and that no-op) per size: 1,000 CIDRs, 10,000 CIDRs.
    const worst = new Map<number, { extra: number; base: number }>();
    for (const [size, layout] of [
      [1000, clusterLayout()],
      [1000, scatteredLayout()],
      [10000, clusterLayout(10000)],
      [10000, scatteredLayout(10000)],
    ] as const) {
      // Straight from the previous layout: km_nodeinfo (16,384 entries) removes what goes before adding what
      // comes (src/datapath/prefix-map-order.ts), so one 10,000-CIDR set replaces another.
      await dp.setRemoteCidrs(layout.cidrs);
      const index = (await dp.stats()).cidrIndex;
      // An index over capacity is not installed: the programs then ask the trie, and the daemon's status
      // (cidrIndex null) and metric (kmesh_ipsec_cidr_index_installed 0) say so. Measured as it is.
      const deployed = await measure(bpf, dp, noop, layout);
      await emptyIndexSlot(bpf, root);
      if ((await dp.stats()).cidrIndex) throw new Error('km_cidr_index slot did not empty');
      const lpm = await measure(bpf, dp, noop, layout);
      const asDeployed = index
        ? `km_cidr_index (${index.nodes}/${index.nodeCapacity} nodes, ${index.records}/${index.recordCapacity} tails)`
        : 'NO km_cidr_index (over its capacity: the trie answers; status cidrIndex null, metric kmesh_ipsec_cidr_index_installed 0)';
      console.log(`# ${layout.name} layout: as deployed, ${asDeployed} | km_nodeinfo LPM fallback`);
      console.log(`${'  tc_noop (baseline)'.padEnd(22)} ${deployed.base.toFixed(0).padStart(4)} ns/packet`);
      for (const [i, c] of deployed.cases.entries()) {
        const trie = lpm.cases[i]!.ns;
        const extra = c.ns - deployed.base;
        if (extra > (worst.get(size)?.extra ?? -Infinity)) worst.set(size, { extra, base: deployed.base });
        console.log(
          `  ${`encrypt ${c.name}`.padEnd(20)} ${c.ns.toFixed(0).padStart(4)} ns/packet  (+${extra.toFixed(0)} ns)`.padEnd(
            52,
          ) + `| ${trie.toFixed(0).padStart(4)} ns/packet  (+${(trie - lpm.base).toFixed(0)} ns)`,
        );
      }
    }
    const cluster = clusterLayout();
    await dp.setRemoteCidrs(cluster.cidrs);
    await measureMssClamp(bpf, dp, noop, cluster);
    const summary = (size: number, target: number): string => {
      const w = worst.get(size)!;
      const ratio = (w.base + w.extra) / w.base;
      return (
        `${size} CIDRs: ${w.extra.toFixed(0)} ns/packet at worst (ratio ${ratio.toFixed(2)}x the no-op); ` +
        `target <= ${target} ns: ${w.extra <= target ? 'met' : 'NOT met'}`
      );
    };
    console.log(`marginal cost over no-op: ${summary(1000, TARGET_NS)} | ${summary(10000, TARGET_10K_NS)}`);
  } finally {
    noop?.close();
    await dp.uninstall().catch(() => undefined);
    rmSync(root, { recursive: true, force: true });
  }
}

await main();
