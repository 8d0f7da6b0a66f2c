// Benchmark (issue 5 item 4): a full apply of the desired XFRM state for N peers (default 1000) through the
// reconciler + netlink adapter, against `ip -batch` installing the same objects, measured in the same run in two
// namespaces of our own, through the daemon's reconciler with its kept kernel view (src/ipsec/kept-xfrm-view.ts)
// over a watching adapter; then no-change steps through it (right after the apply, then steady state), a
// no-change reconcile that dumps (the periodic audit), a warm replan, and a one-peer step. Both namespaces are
// dumped afterwards and must hold identical objects, so the baseline is known to do the same work.
//   policies variant: policies only (the host kernel has no ESP/AEAD)
//   full variant:     SAs and policies (needs ESP/AEAD: the kernel-test VM)
// `node dist/test/bench/xfrm.js` runs the policies variant here and then the full variant in the VM; the last
// line printed is `xfrm N=1000: ours <ms>, ip -batch <ms>, ratio <r>, no-op reconcile <ms> <writes> writes`.
// Options: --variant policies|full|both, --peers N, --rounds R (the round with the median ratio; 5 rounds on the host, 3 in
// the VM), --kernel 6.1|6.12 (the VM's kernel for the full variant), --here (the full variant on this kernel instead
// of in the VM: what the VM runs). Rounds are not warmed up: round 1 runs cold (interpreter, as right after a daemon
// start; in the emulated VM that alone costs seconds), later rounds show the steady state; all are printed.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { release, tmpdir } from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { KeyHistory } from '../../src/keys/key-history.js';
import { allocatePeerIds } from '../../src/ipsec/peer-ids.js';
import { planXfrm, type XfrmPlan } from '../../src/ipsec/planner.js';
import { KeptXfrmView, type KernelRead } from '../../src/ipsec/kept-xfrm-view.js';
import { reconcile, type DesiredXfrm } from '../../src/ipsec/reconciler.js';
import { loadAddon } from '../../src/native/addon.js';
import { NetlinkXfrmKernel } from '../../src/xfrm/netlink-kernel.js';
import { benchCluster, type BenchCluster } from './bench-cluster.js';
import { coldPlanFloor } from './cold-plan-floor.js';
import { coldPlans, together } from './cold-plan-phases.js';
import { median } from './median.js';
import { describeMemorySettings, underDaemonMemorySettings } from './daemon-memory-settings.js';
import type { XfrmKernel, XfrmMark, XfrmOp, XfrmOpResult, XfrmPolicy, XfrmState } from '../../src/xfrm/types.js';
import { runAsMain } from './run-as-main.js';

type Variant = 'policies' | 'full';

/**
 * One-peer steps per round (the figure is their median). 11, not 5: a round's steps spread from ~9 to ~60 ms on the
 * host (their writes, and the collection of the verification's garbage in the first ones), and the median of five
 * moved by 2x from round to round (docs/benchmarks.md, fourteenth session).
 */
const ONE_PEER_STEPS = 11;

/** Fresh processes whose cold first plan is timed (the figure is their median). */
const COLD_PLAN_RUNS = 5;

interface RoundFigures {
  oursMs: number;
  /** Part of oursMs spent inside the adapter's apply() calls (encode, syscalls, kernel work, acks). */
  applyMs: number;
  ipBatchMs: number;
  /** A step whose replan found nothing new: the kept view's same-plan path (no dump, no diff). */
  noopMs: number;
  noopWrites: number;
  /** The first step after the full apply: the same, plus settling the apply's announcements (one per write). */
  settleMs: number;
  /** A no-change reconcile that dumps the kernel (every step before the kept view; now the periodic audit). */
  auditMs: number;
  objects: number;
  /** A replan of the same cluster, as every daemon step makes (warm: the code and the caches have run). */
  planMs: number;
  /**
   * A plan of every peer anew, warm: the cluster under a new PSK, so no peer's objects or keys can be reused
   * (every key derived, every object built and checked), as after a key change.
   */
  planAnewMs: number;
  /** One peer changed (new pod CIDR; in the full variant a new boot ID too): replan + reconcile. */
  stepMs: number;
  stepWrites: number;
  /** Part of stepMs spent in apply() (the writes themselves). */
  stepApplyMs: number;
  /** Every one-peer step's time, in order (stepMs is their median). */
  stepAllMs: number[];
}

const hexNum = (n: number): string => `0x${(n >>> 0).toString(16)}`;
const markArgs = (word: string, m: XfrmMark): string => `${word} ${hexNum(m.value)} mask ${hexNum(m.mask)}`;
const PROTO_NAMES: Record<number, string> = { 50: 'esp', 51: 'ah', 108: 'comp' };

/** One `ip xfrm state add` line (batch syntax, no leading "ip") for an SA. */
function ipStateLine(s: XfrmState): string {
  const parts = [
    'xfrm state add',
    `src ${s.src} dst ${s.dst} proto ${PROTO_NAMES[s.proto] ?? String(s.proto)} spi ${hexNum(s.spi)}`,
    `reqid ${hexNum(s.reqid)} mode ${s.mode}`,
  ];
  if (s.aead) parts.push(`aead ${s.aead.name} 0x${s.aead.key.toString('hex')} ${s.aead.icvBits}`);
  if (s.mark) parts.push(markArgs('mark', s.mark));
  if (s.outputMark) parts.push(markArgs('output-mark', s.outputMark));
  parts.push(`replay-window ${s.replayWindow}`);
  if (s.esn) parts.push('flag esn');
  return parts.join(' ');
}

/** One `ip xfrm policy add` line for a policy. */
function ipPolicyLine(p: XfrmPolicy): string {
  const parts = [`xfrm policy add src ${p.selector.src} dst ${p.selector.dst}`];
  if (p.selector.proto !== 0) parts.push(`proto ${p.selector.proto}`);
  parts.push(`dir ${p.dir}`);
  if (p.mark) parts.push(markArgs('mark', p.mark));
  parts.push(`priority ${p.priority}`);
  if (p.action === 'block') parts.push('action block');
  for (const t of p.templates) {
    const spi = t.spi !== 0 ? ` spi ${hexNum(t.spi)}` : '';
    parts.push(`tmpl src ${t.src} dst ${t.dst} proto ${PROTO_NAMES[t.proto] ?? String(t.proto)}${spi}`);
    parts.push(`reqid ${hexNum(t.reqid)} mode ${t.mode}`);
  }
  return parts.join(' ');
}

function desiredOf(plan: XfrmPlan, variant: Variant): DesiredXfrm {
  return { states: variant === 'full' ? plan.states : [], policies: plan.policies };
}

/** The same objects as `ip -batch` lines, in the reconciler's order: block, SAs, in/fwd, out policies. */
function batchLines(desired: DesiredXfrm): string[] {
  const rank = { block: 0, in: 1, fwd: 1, out: 2 } as const;
  const policies = [...desired.policies].sort((a, b) => rank[a.role] - rank[b.role]);
  const block = policies.filter((p) => p.role === 'block');
  const rest = policies.filter((p) => p.role !== 'block');
  return [
    ...block.map((p) => ipPolicyLine(p.policy)),
    ...desired.states.map((s) => ipStateLine(s.state)),
    ...rest.map((p) => ipPolicyLine(p.policy)),
  ];
}

function ip(args: string[]): string {
  return execFileSync('ip', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], maxBuffer: 1 << 28 });
}

function withNetns<T>(name: string, body: () => Promise<T>): Promise<T> {
  try {
    ip(['netns', 'del', name]);
  } catch {
    // not there
  }
  ip(['netns', 'add', name]);
  return body().finally(() => ip(['netns', 'del', name]));
}

const canon = (items: object[]): string =>
  items
    .map((x) =>
      JSON.stringify({ ...x, index: undefined }, (_k, v: unknown) =>
        v && typeof v === 'object' && !Array.isArray(v)
          ? Object.fromEntries(Object.entries(v as Record<string, unknown>).sort(([a], [b]) => (a < b ? -1 : 1)))
          : v,
      ),
    )
    .sort()
    .join('\n');

/** Wraps a kernel to add up the time spent in apply() (everything else in a reconcile is dump + diff). */
class TimedKernel implements XfrmKernel {
  applyMs = 0;
  constructor(private readonly inner: XfrmKernel) {}
  dumpStates(): Promise<XfrmState[]> {
    return this.inner.dumpStates();
  }
  dumpPolicies(): Promise<XfrmPolicy[]> {
    return this.inner.dumpPolicies();
  }
  touchedSinceLastLook(): string {
    return this.inner.touchedSinceLastLook?.() ?? 'the XFRM kernel has no change feed';
  }
  async apply(ops: readonly XfrmOp[]): Promise<XfrmOpResult[]> {
    const t0 = performance.now();
    try {
      return await this.inner.apply(ops);
    } finally {
      this.applyMs += performance.now() - t0;
    }
  }
}

/** The peer ids of the last plan: each allocation starts from the previous one, as the controller's does. */
let benchPeerIds = new Map<string, number>();

/** The plan for a cluster (screening, peer ids, planner), as the controller computes it on every step. */
function planCluster(cluster: BenchCluster): XfrmPlan {
  benchPeerIds = allocatePeerIds(
    benchPeerIds,
    cluster.peers.map((p) => p.name),
  ).ids;
  return planXfrm({ local: cluster.local, peers: cluster.peers, keys: cluster.keys, peerIds: benchPeerIds });
}

/** The same keys (SPIs, algorithm) with new key bytes: a new PSK, under which every pair key is new. */
function renewedKeys(keys: KeyHistory): KeyHistory {
  return KeyHistory.of(keys.keys().map((k) => ({ ...k, key: Buffer.from(k.key.map((b) => b ^ 0x5a)) })));
}

/** The cluster with peer `i` changed: a new pod CIDR (10.255.x.0/24, unused) and boot ID (so new SA keys). */
function withOnePeerChanged(cluster: BenchCluster, i: number): BenchCluster {
  const peers = cluster.peers.map((p, k) =>
    k === i ? { ...p, bootID: `${p.bootID.slice(0, -4)}beef`, podCIDRs: [`10.255.${k & 0xff}.0/24`] } : p,
  );
  return { ...cluster, peers };
}

/**
 * One round in two fresh namespaces. Who goes first alternates between rounds (`oursFirst`), and both namespaces
 * are emptied in the foreground before they are deleted, so no round pays for the previous one's teardown.
 */
async function round(
  variant: Variant,
  cluster: BenchCluster,
  desired: DesiredXfrm,
  batchFile: string,
  tag: string,
  oursFirst: boolean,
): Promise<RoundFigures> {
  const oursNs = `kmt-xfrm-bench-ours-${tag}`;
  const baseNs = `kmt-xfrm-bench-ip-${tag}`;
  return withNetns(oursNs, () =>
    withNetns(baseNs, async () => {
      const kernel = new NetlinkXfrmKernel({ netns: oursNs, watch: true });
      const timed = new TimedKernel(kernel);
      // The daemon's reconciler: the kernel view kept between steps, dumped when the change feed says so.
      const kept = new KeptXfrmView(timed);
      const runIpBatch = (): number => {
        const t0 = performance.now();
        ip(['-n', baseNs, '-batch', batchFile]);
        return performance.now() - t0;
      };
      let ipBatchMs = oursFirst ? 0 : runIpBatch();
      let t0 = performance.now();
      const full = await kept.reconcile(desired);
      const oursMs = performance.now() - t0;
      const fullApplyMs = timed.applyMs;
      if (full.failed > 0) {
        const first = full.results.find((r) => r.errno !== 0);
        throw new Error(`full apply failed for ${full.failed} ops, first: ${first?.message ?? String(first?.errno)}`);
      }
      // A replan of the unchanged cluster (what a daemon step computes before its reconcile), then its reconcile.
      t0 = performance.now();
      const replanned = planCluster(cluster);
      const planMs = performance.now() - t0;
      // The first step after the apply also settles the apply's announcements on the change feed (one per
      // write); the next one is what every resync of an unchanged cluster costs.
      t0 = performance.now();
      const settle = await kept.reconcile(desiredOf(replanned, variant));
      const settleMs = performance.now() - t0;
      const replannedAgain = desiredOf(planCluster(cluster), variant);
      t0 = performance.now();
      const noop = await kept.reconcile(replannedAgain);
      const noopMs = performance.now() - t0;
      if (kept.lastRead.how !== 'same-plan') throw new Error(`no-op step read the kernel: ${kept.lastRead.why}`);
      if (settle.writes > 0) throw new Error(`the step after the apply wrote ${settle.writes} objects`);
      t0 = performance.now();
      const audit = await reconcile(kernel, desired);
      const auditMs = performance.now() - t0;
      if (audit.writes > 0) throw new Error(`the audit found ${audit.writes} objects to write after a no-op`);
      if (oursFirst) ipBatchMs = runIpBatch();

      const base = new NetlinkXfrmKernel({ netns: baseNs });
      const [ourPolicies, basePolicies] = [await kernel.dumpPolicies(), await base.dumpPolicies()];
      if (canon(ourPolicies) !== canon(basePolicies))
        throw new Error('ip -batch and ours installed different policies');
      let objects = ourPolicies.length;
      if (variant === 'full') {
        const [ourStates, baseStates] = [await kernel.dumpStates(), await base.dumpStates()];
        if (canon(ourStates) !== canon(baseStates)) throw new Error('ip -batch and ours installed different SAs');
        objects += ourStates.length;
      }
      // Steps in which one peer changed (another peer each time, so each step is a change): replan + reconcile,
      // counting their writes and their time. The figure is the median of ONE_PEER_STEPS; the first of them also
      // pays for collecting the garbage of the verification above (two dumps of every object, and their texts).
      const steps: { ms: number; writes: number; applyMs: number }[] = [];
      let changed = cluster;
      for (let k = 0; k < ONE_PEER_STEPS; k++) {
        changed = withOnePeerChanged(changed, Math.floor(((k + 1) * cluster.peers.length) / (ONE_PEER_STEPS + 1)));
        const applyBefore = timed.applyMs;
        t0 = performance.now();
        const step = await kept.reconcile(desiredOf(planCluster(changed), variant));
        const ms = performance.now() - t0;
        const stepRead: KernelRead = { ...kept.lastRead };
        if (stepRead.how !== 'view') throw new Error(`one-peer step did not use the kept view: ${stepRead.why}`);
        if (step.failed > 0) throw new Error(`one-peer step failed for ${step.failed} ops`);
        steps.push({ ms, writes: step.writes, applyMs: timed.applyMs - applyBefore });
      }
      const median = [...steps].sort((a, b) => a.ms - b.ms)[Math.floor(steps.length / 2)] as (typeof steps)[number];
      // Planning every peer anew (after the steps, which rely on the planner's memory of the last plan; the
      // cluster is planned again afterwards, untimed, so the next round finds that memory as it was).
      const anew = { ...changed, keys: renewedKeys(changed.keys) };
      t0 = performance.now();
      const anewPlan = planCluster(anew);
      const planAnewMs = performance.now() - t0;
      if (anewPlan.states.length !== replanned.states.length || anewPlan.policies.length !== replanned.policies.length)
        throw new Error('the plan under a new PSK has other objects than the replan');
      planCluster(changed);
      // These are the benchmark's own namespaces: empty them now rather than in the kernel's deferred cleanup.
      for (const ns of [oursNs, baseNs]) {
        ip(['-n', ns, 'xfrm', 'policy', 'flush']);
        ip(['-n', ns, 'xfrm', 'state', 'flush']);
      }
      return {
        oursMs,
        applyMs: fullApplyMs,
        ipBatchMs,
        noopMs,
        noopWrites: noop.writes,
        settleMs,
        auditMs,
        objects,
        planMs,
        planAnewMs,
        stepMs: median.ms,
        stepWrites: Math.max(...steps.map((x) => x.writes)),
        stepApplyMs: median.applyMs,
        stepAllMs: steps.map((x) => x.ms),
      };
    }),
  );
}

function resultLine(n: number, f: RoundFigures): string {
  const ratio = f.oursMs / f.ipBatchMs;
  const ofFull = (ms: number): string => `${(ms / f.oursMs).toFixed(2)}x`;
  return (
    `xfrm N=${n}: ours ${f.oursMs.toFixed(1)}, ip -batch ${f.ipBatchMs.toFixed(1)}, ratio ${ratio.toFixed(3)}, ` +
    `no-op reconcile ${f.noopMs.toFixed(1)} ${f.noopWrites} writes (${ofFull(f.noopMs)} full; ` +
    `right after the apply ${f.settleMs.toFixed(1)} = ${ofFull(f.settleMs)}), ` +
    `audit dump ${f.auditMs.toFixed(1)} (${ofFull(f.auditMs)} full), ` +
    `plan ${f.planMs.toFixed(1)} (${ofFull(f.planMs)} full; every peer anew ${f.planAnewMs.toFixed(1)} = ${ofFull(f.planAnewMs)}), ` +
    `one-peer step ${f.stepMs.toFixed(1)} ${f.stepWrites} writes (${ofFull(f.stepMs)} full; its writes ` +
    `${f.stepApplyMs.toFixed(1)} = ${ofFull(f.stepApplyMs)}; median of ${f.stepAllMs.map((ms) => ms.toFixed(1)).join('/')})`
  );
}

async function runVariant(variant: Variant, peers: number, rounds: number): Promise<string> {
  // The native addon is loaded here, with the rest of our code (the imports above), not inside the first plan
  // (which derives its keys through it) or round 1: the daemon loads it at startup (createDatapathPort builds the
  // BPF datapath over it) before its first XFRM step, so neither a plan nor a full apply pays for it. Lazily
  // loaded, the first dump of round 1 paid node-gyp-build's lookup and the dlopen (~230 ms in the VM, over 9p).
  // ip pays its own exec and dynamic linking in every ip -batch run, as it would for every batch the daemon sent
  // through it.
  loadAddon();
  // The fresh processes first, while this process has run nothing: measured after its own first plan, they could
  // share the two cores with the garbage collection and compilation that plan left to V8's threads, and read
  // 20-40 ms above cold-plan-phases' in the same hour (docs/benchmarks.md, sixteenth session).
  // What any planner pays at least for this plan in a fresh process: the baseline the cold plan is read against.
  const floor = await coldPlanFloor(peers);
  // The same first plan in fresh processes: one cold plan is one sample of a noisy host (this one's spread over
  // 130-260 ms with the same code), and the figure read against the target is their median.
  const cold = await coldPlans(peers, COLD_PLAN_RUNS);
  const coldMs = median(cold.map(together));
  const cluster = benchCluster(peers);
  let t0 = performance.now();
  const plan = planCluster(cluster);
  const planMs = performance.now() - t0;
  if (
    floor.keys !== plan.states.length ||
    floor.states !== plan.states.length ||
    floor.policies !== plan.policies.length
  )
    throw new Error(
      `the cold-plan floor built ${floor.keys} keys, ${floor.states} SAs, ${floor.policies} policies; the plan has ` +
        `${plan.states.length} SAs, ${plan.policies.length} policies`,
    );
  if (cold.some((c) => c.states !== plan.states.length || c.policies !== plan.policies.length))
    throw new Error(`a cold plan in a fresh process planned other objects than this process's first plan`);
  const desired = desiredOf(plan, variant);
  const dir = mkdtempSync(path.join(tmpdir(), 'kmt-xfrm-bench-'));
  const batchFile = path.join(dir, 'xfrm.batch');
  writeFileSync(batchFile, `${batchLines(desired).join('\n')}\n`);
  console.log(
    `# ${variant} variant: ${peers} peers, ${desired.states.length} SAs + ${desired.policies.length} policies ` +
      `(first plan, cold, in ${planMs.toFixed(1)} ms, not counted below); kernel ${release()}, ${ip(['-V']).trim()}, node ${process.version}`,
  );
  const all: RoundFigures[] = [];
  try {
    for (let r = 0; r < rounds; r++) {
      t0 = performance.now();
      const f = await round(variant, cluster, desired, batchFile, `${process.pid}-${r}`, r % 2 === 0);
      all.push(f);
      console.log(
        `#   round ${r + 1}: ${resultLine(peers, f)} (apply calls ${f.applyMs.toFixed(1)} ms of ours; ` +
          `${f.objects} objects verified identical)`,
      );
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  // The summary is one actual round, the one with the median ratio, so its figures belong together.
  const byRatio = [...all].sort((x, y) => x.oursMs / x.ipBatchMs - y.oursMs / y.ipBatchMs);
  const summary = byRatio[Math.floor(byRatio.length / 2)] as RoundFigures;
  const noopWrites = Math.max(...all.map((f) => f.noopWrites));
  const stepWrites = Math.max(...all.map((f) => f.stepWrites));
  const ofFull = (ms: number): string => `${(ms / summary.oursMs).toFixed(2)}x`;
  const phase = (k: 'ids' | 'screen' | 'plan'): number => median(cold.map((c) => c[k]));
  console.log(
    `# cold first plan ${coldMs.toFixed(1)} ms = ${ofFull(coldMs)} the full apply below, ` +
      `${(coldMs / summary.ipBatchMs).toFixed(2)}x its ip -batch (median of ` +
      `${COLD_PLAN_RUNS} fresh processes: ${cold.map((c) => together(c).toFixed(1)).join('/')}; by phase, medians: ` +
      `peer ids ${phase('ids').toFixed(1)} ms, screening ${phase('screen').toFixed(1)} ms = ${ofFull(phase('screen'))}, ` +
      `plan ${phase('plan').toFixed(1)} ms = ${ofFull(phase('plan'))}; this process's ` +
      `${planMs.toFixed(1)} ms = ${ofFull(planMs)}); its floor in fresh processes (medians of 3): the plan's ${floor.keys} pair keys alone ${floor.keysMs.toFixed(1)} ms = ` +
      `${ofFull(floor.keysMs)}, its objects built bare ${floor.objectsMs.toFixed(1)} ms = ${ofFull(floor.objectsMs)} ` +
      `(the cold plan is ${(coldMs / (floor.keysMs + floor.objectsMs)).toFixed(1)}x both together); with the ` +
      `full apply, a start's first step ${(coldMs + summary.oursMs).toFixed(1)} ms = ` +
      `${((coldMs + summary.oursMs) / summary.ipBatchMs).toFixed(2)}x ip -batch`,
  );
  console.log(
    `# ${variant} variant: the round with the median ratio of ${rounds}; no-op and one-peer writes are the max over all rounds:`,
  );
  return resultLine(peers, { ...summary, noopWrites, stepWrites });
}

async function runFullInVm(kernel: string, peers: number, rounds: number): Promise<string | undefined> {
  const { runInVm, VmRunError } = await import('../vm/runner.js');
  const { isVmKernel } = await import('../vm/lib/kernels.js');
  if (!isVmKernel(kernel)) throw new Error(`unknown VM kernel ${kernel}`);
  console.log(`# full variant in the kernel-test VM (guest ${kernel}, qemu TCG: absolute times are emulated)`);
  let pending = '';
  try {
    const result = await runInVm({
      kernel,
      command: `node dist/test/bench/xfrm.js --variant full --here --peers ${peers} --rounds ${rounds}`,
      timeoutMs: 1_800_000,
      onOutput: (text) => {
        // Prefix whole lines only: output arrives in arbitrary chunks.
        pending += text;
        const lines = pending.split('\n');
        pending = lines.pop() ?? '';
        for (const line of lines) process.stdout.write(`  vm| ${line}\n`);
      },
    });
    if (result.exitCode !== 0) {
      console.log(`# VM bench exited ${result.exitCode}`);
      return undefined;
    }
    return result.output
      .split('\n')
      .map((l) => l.trim())
      .filter((l) => l.startsWith('xfrm N='))
      .at(-1);
  } catch (e) {
    if (e instanceof VmRunError) {
      console.log(`# VM run failed: ${e.message}`);
      return undefined;
    }
    throw e;
  }
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      variant: { type: 'string', default: 'both' },
      peers: { type: 'string', default: '1000' },
      rounds: { type: 'string' },
      kernel: { type: 'string', default: '6.1' },
      here: { type: 'boolean', default: false },
    },
  });
  const peers = Number(values.peers);
  if (!Number.isInteger(peers) || peers < 1 || peers > 60000)
    throw new Error(`--peers ${values.peers} is not 1..60000`);
  const variant = values.variant;
  if (variant !== 'policies' && variant !== 'full' && variant !== 'both') {
    throw new Error(`--variant ${variant} is not policies, full or both`);
  }
  if (process.getuid?.() !== 0) {
    console.log('# xfrm bench needs root (network namespaces, NETLINK_XFRM); not run');
    return 1;
  }
  // Our side runs as the daemon runs it: under its memory settings.
  const code = await underDaemonMemorySettings();
  if (code !== undefined) return code;
  console.log(`# ${describeMemorySettings()}`);
  const rounds = (fallback: number): number => {
    const r = Number(values.rounds ?? fallback);
    if (!Number.isInteger(r) || r < 1) throw new Error(`--rounds ${String(values.rounds)} is not a positive integer`);
    return r;
  };
  if (variant === 'policies' || (variant === 'full' && values.here)) {
    console.log(await runVariant(variant, peers, rounds(variant === 'full' ? 3 : 5)));
    return 0;
  }
  if (variant === 'full') {
    const vmLine = await runFullInVm(values.kernel, peers, rounds(3));
    if (vmLine === undefined) return 1;
    console.log('# full variant (SAs + policies) from the VM:');
    console.log(vmLine);
    return 0;
  }
  const hostLine = await runVariant('policies', peers, rounds(5));
  console.log(hostLine);
  const vmLine = await runFullInVm(values.kernel, peers, rounds(3));
  if (vmLine === undefined) {
    console.log('# full variant unavailable; the host (policies-only) figures are the result:');
    console.log(hostLine);
    return 1;
  }
  console.log('# host policies-only above; full variant (SAs + policies) from the VM:');
  console.log(vmLine);
  return 0;
}

// Run only as a program, not when imported (tests and scripts reuse the ip line renderers above).
runAsMain(import.meta.url, 'xfrm bench', main);
