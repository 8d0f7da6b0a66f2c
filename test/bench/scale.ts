// `npm run bench:scale` (issue 15 item 2): one node daemon among 5,000 simulated peers (default; --peers N), above
// the kernel adapters: a cluster source, validation, the IPsec controller and the reconcile loop with its real
// scheduler, over the in-memory XFRM kernel and datapath of test/fakes (the kernel is not the subject here:
// bench:xfrm measures it). The source (--source, test/bench/scale-clusters.ts): `dir` (default), the directory
// source (real files, fs.watch and its rescan); `kube`, the Kubernetes source against a real kube-apiserver and
// etcd started for the run (the control plane's binaries must be built: scripts/build-control-plane.sh), which
// holds every peer's object as the API server serves it. Prints:
//   1. start: time from the first key to the step in which every peer is reached with SPI 1, and its steps;
//   2. memory: RSS and V8 heap after that (this process also holds the fake kernel's copy of every SA and
//      policy and the fake datapath's BPF maps, which a real daemon leaves to the kernel: their share is
//      measured by building twins of them, at each reading); and what a scrape of the daemon's /metrics carries;
//   3. a no-change step (the 30 s resync) and a step after one peer changed (written once the daemon's least gap
//      between steps has passed: a change after a quiet spell);
//   4. rotation: the key for SPI 2 arrives, then every peer advertises SPI 2 as 5,000 KmeshNodeInfo updates
//      spread over --spread-ms (default 3000; the API server may take longer to accept them), written by another
//      process as other nodes would: time from the
//      first update to the step that reflects all of them (every peer sent to with SPI 2), and how many steps it
//      took (coalescing and the least gap between steps keep it small: the daemon's --min-step-gap, here
//      --min-step-gap-ms, default the daemon's), and this node's status writes from its new key to that step;
//      then RSS and heap again, and what the source read (files, or lists and watches);
//      with --idle-ms N, RSS and heap again after N ms idle (what V8's memory reducer gives back);
//   5. acknowledgements: every peer writes its status (holding SPIs 1 and 2, sending with 2), as 5,000 status-only
//      updates over --spread-ms, as peers' daemons write theirs several times per rotation: time from the first
//      write to the step that read them all, its steps, their median and longest time, and its XFRM writes (none);
//   6. joins: 100 new peers over 5 s (nodes coming up): the steps and this node's status writes until its
//      published status counts them all (each write is an event on every peer's watch).
// Before the bench's own files are written, the RSS of the process with everything loaded is printed as the
// baseline. The last line sums it up. Figures only; nothing here asserts on time.
// It runs under the daemon's memory settings (bin/heap-settings.js): started without its launch flags or
// environment, it starts itself again with them, as the daemon's launcher does. RSS is read as the daemon would
// have it, before the full GC the bench forces to read the live heap. The daemon's metrics are kept as its
// defaults keep them (--peer-metrics-limit N to change that: per-peer series for every peer while at most N).
import fs from 'node:fs';
import { Session } from 'node:inspector';
import { parseArgs } from 'node:util';
import { getHeapSpaceStatistics, setFlagsFromString, writeHeapSnapshot } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { DEFAULT_MIN_STEP_GAP_MS, MAX_MIN_STEP_GAP_MS } from '../../src/daemon/config.js';
import { DatapathAdapter } from '../../src/daemon/datapath-port.js';
import { statusJson } from '../../src/daemon/status-server.js';
import { DEFAULT_PEER_METRICS_LIMIT, MAX_PEER_METRICS_LIMIT } from '../../src/daemon/peer-series-limit.js';
import { IpsecAdapter } from '../../src/daemon/ipsec-port.js';
import { ReconcileLoop, type LoopLogger } from '../../src/daemon/loop.js';
import { DaemonMetrics } from '../../src/daemon/metrics.js';
import type { HostNetwork } from '../../src/daemon/pod-interfaces.js';
import type { DaemonStatus } from '../../src/daemon/status.js';
import { parseNodeInfo } from '../../src/ipsec/validate-peer.js';
import type { IpsecKey } from '../../src/model/node.js';
import { FakeDatapath } from '../fakes/fake-datapath.js';
import { FakeXfrmKernel } from '../fakes/fake-xfrm-kernel.js';
import { describeMemorySettings, underDaemonMemorySettings } from './daemon-memory-settings.js';
import { median } from './median.js';
import {
  DirScaleCluster,
  KubeScaleCluster,
  LOCAL,
  peerName,
  peerStatus,
  underlay,
  type ScaleCluster,
} from './scale-clusters.js';

const say = (s: string): void => void process.stdout.write(`${s}\n`);
function key(spi: number): IpsecKey {
  return { spi, aeadKeyName: 'rfc4106(gcm(aes))', key: Buffer.alloc(36, 0x40 + spi), icvBits: 128 };
}

const hostNetwork: HostNetwork = {
  links: [{ ifindex: 2, name: 'eth0', kind: '', addresses: [underlay(0)] }],
  routes: [{ dst: '198.18.0.0/15', dev: 'eth0', family: 4 }],
  neighbours: [],
  fdb: [],
};

// At the daemon's default level (--log-level info): what it skips for a level it does not log (the per-step debug
// summary, a text per peer) is skipped here too.
const quiet: LoopLogger = {
  info: () => undefined,
  warn: () => undefined,
  error: (_o, m) => say(`# daemon error: ${m}`),
  debug: () => undefined,
  isLevelEnabled: (level) => level !== 'debug' && level !== 'trace',
};

const mib = (bytes: number): string => `${(bytes / (1 << 20)).toFixed(1)} MiB`;

/** V8's heap spaces (used of committed), for KMESH_SCALE_DEBUG: where the committed heap sits. */
function heapSpaces(): string {
  return getHeapSpaceStatistics()
    .filter((s) => s.space_size > 1 << 20)
    .map((s) => `${s.space_name} ${mib(s.space_used_size)} of ${mib(s.space_size)}`)
    .join(', ');
}

/** Resident memory by mapping kind (malloc's [heap], other anonymous, file-backed), for KMESH_SCALE_DEBUG. */
function residentByMapping(): string {
  const sums = new Map<string, number>();
  let kind = '';
  for (const line of fs.readFileSync('/proc/self/smaps', 'utf8').split('\n')) {
    const head = /^[0-9a-f]+-[0-9a-f]+ \S+ \S+ \S+ \S+\s*(.*)$/.exec(line);
    if (head) kind = head[1] === '' ? 'anonymous' : head[1]?.startsWith('/') ? 'files' : (head[1] ?? '');
    else if (line.startsWith('Rss:')) sums.set(kind, (sums.get(kind) ?? 0) + Number(line.split(/\s+/)[1]) * 1024);
  }
  return [...sums]
    .filter(([, b]) => b > 1 << 20)
    .map(([k, b]) => `${k} ${mib(b)}`)
    .join(', ');
}

/**
 * With KMESH_SCALE_ALLOC_PROFILE=FILE, a sampling profile of every allocation (those collected since included)
 * from the start of the rotation to the step that reflects it, into FILE (a .heapprofile for Chrome DevTools):
 * where the garbage that grows the old space is made. Resolves with a function that stops it.
 */
async function allocationProfile(): Promise<() => Promise<void>> {
  const file = process.env.KMESH_SCALE_ALLOC_PROFILE;
  if (!file) return () => Promise.resolve();
  const session = new Session();
  session.connect();
  const post = (method: string, params?: object): Promise<unknown> =>
    new Promise((resolve, reject) =>
      session.post(method, params, (err, result) => (err ? reject(err) : resolve(result))),
    );
  await post('HeapProfiler.startSampling', {
    samplingInterval: 4096,
    includeObjectsCollectedByMajorGC: true,
    includeObjectsCollectedByMinorGC: true,
  });
  return async () => {
    const { profile } = (await post('HeapProfiler.stopSampling')) as { profile: object };
    fs.writeFileSync(file, JSON.stringify(profile));
    session.disconnect();
    say(`# allocation profile: ${file}`);
  };
}

/** With KMESH_SCALE_HEAP_SNAPSHOT=FILE, a heap snapshot into FILE.start or FILE.end. */
function snapshot(when: 'start' | 'end'): void {
  const file = process.env.KMESH_SCALE_HEAP_SNAPSHOT;
  if (file) say(`# heap snapshot: ${writeHeapSnapshot(`${file}.${when}`)}`);
}

/** Peers that join in phase 6, over JOIN_SPREAD_MS. */
const JOINS = 100;
const JOIN_SPREAD_MS = 5000;
/** How long phase 6 waits for the status counting the joined peers: its reporting interval is at most 60 s. */
const MAX_REPORT_WAIT_MS = 120_000;

/** kmesh_node_status_writes_total by why, so far. */
async function statusWrites(metrics: DaemonMetrics): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const m of (await metrics.text()).matchAll(/^kmesh_node_status_writes_total\{why="(\w+)"\} (\d+)$/gm)) {
    out[m[1] as string] = Number(m[2]);
  }
  return out;
}

/** How many status writes of each kind were made between two readings of statusWrites. */
function writesBetween(before: Record<string, number>, after: Record<string, number>): (why: string) => number {
  return (why) => (after[why] ?? 0) - (before[why] ?? 0);
}

function gc(): void {
  (runInNewContext('gc') as () => void)();
}

interface StepRecord {
  at: number;
  ms: number;
  steps: number;
}

interface BenchOptions {
  source: 'dir' | 'kube';
  peers: number;
  spreadMs: number;
  idleMs: number;
  minStepGapMs: number;
  peerMetricsLimit: number;
}

async function bench({
  source: sourceKind,
  peers,
  spreadMs,
  idleMs,
  minStepGapMs,
  peerMetricsLimit,
}: BenchOptions): Promise<void> {
  // The cluster first (a control plane takes seconds to start): its processes are not this one's RSS.
  const cluster: ScaleCluster =
    sourceKind === 'kube' ? await KubeScaleCluster.create() : await DirScaleCluster.create();
  const { source } = cluster;
  const steps: StepRecord[] = [];
  let waiter:
    { test: (s: DaemonStatus) => boolean; resolve: (r: StepRecord) => void; reject: (e: Error) => void } | undefined;
  const kernel = new FakeXfrmKernel({ recordOps: false });
  const dp = new FakeDatapath({ interfaces: [{ name: 'eth0', ifindex: 2 }] });
  const ipsec = new IpsecAdapter(kernel, { graceMs: 60_000 });
  const metrics = new DaemonMetrics({ peerSeriesLimit: peerMetricsLimit });
  const loop = new ReconcileLoop({
    nodeName: LOCAL,
    source,
    ipsec,
    datapath: new DatapathAdapter(dp, `/sys/fs/bpf/${LOCAL}`),
    parseNodeInfo,
    hostNetwork: () => Promise.resolve(hostNetwork),
    xfrmStat: () => Promise.resolve({}),
    minStepGapMs,
    log: quiet,
    metrics,
    onStatus: (status) => {
      // The step's figures only: a status holds every peer's, and keeping one per step would weigh on the RSS
      // measured here as if the daemon kept them (it keeps the last one).
      const record = { at: performance.now(), ms: status.lastStepMs, steps: status.steps };
      steps.push(record);
      if (process.env.KMESH_SCALE_DEBUG)
        say(
          `# step ${status.steps}: ${status.peers.length} peers, advertised ${String(status.advertisedSpi)}, invalid ${status.invalidPeers.slice(0, 2).join('; ')}, problems ${status.problems.slice(0, 3).join('; ')}`,
        );
      if (waiter && status.invalidPeers.length > 0) {
        waiter.reject(new Error(`a simulated peer is invalid: ${status.invalidPeers[0]}`));
        waiter = undefined;
      } else if (waiter?.test(status)) {
        waiter.resolve(record);
        waiter = undefined;
      }
    },
  });
  const until = (what: string, test: (s: DaemonStatus) => boolean, timeoutMs = 600_000): Promise<StepRecord> =>
    new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no step reached ${what} within ${timeoutMs} ms`)), timeoutMs);
      waiter = {
        test,
        resolve: (r) => {
          clearTimeout(timer);
          resolve(r);
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      };
    });
  const allOn = (spi: number) => (s: DaemonStatus) =>
    s.peers.length === peers && s.peers.every((p) => p.outboundSpi === spi) && s.advertisedSpi === spi;
  gc();
  const { rss: rssBefore, heapUsed: heapBefore } = process.memoryUsage();
  try {
    await cluster.seed(peers);
    say(
      `# ${peers} peers (${cluster.description}; fake XFRM kernel and datapath); node ${process.version}; ` +
        `RSS before the start ${mib(rssBefore)} (V8 heap used ${mib(heapBefore)})`,
    );

    // 1. Start and the first key.
    let t0 = performance.now();
    await source.start(() => loop.trigger('change'));
    loop.start();
    loop.keyEvent({ kind: 'key', key: key(1) });
    const started = await until('SPI 1 to every peer', allOn(1));
    const startMs = started.at - t0;
    say(`start: first key -> every peer on SPI 1 in ${(startMs / 1000).toFixed(2)} s, ${started.steps} steps`);

    // 2. Memory once settled.
    await loop.idle();
    const rssStart = process.memoryUsage().rss;
    gc();
    const mem = process.memoryUsage();
    const fakeStart = await fakeShare(kernel, dp);
    say(
      `memory: RSS ${mib(rssStart)} (${mib(mem.rss)} after a forced full GC), V8 heap used ${mib(mem.heapUsed)} of ${mib(mem.heapTotal)} committed, ` +
        `external ${mib(mem.external)}, array buffers ${mib(mem.arrayBuffers)}; ${fakeContents(kernel, dp)} ~${mib(fakeStart)} of it; ` +
        `RSS less that: ${mib(rssStart - fakeStart)}`,
    );
    if (process.env.KMESH_SCALE_DEBUG) say(`# heap spaces: ${heapSpaces()}; resident: ${residentByMapping()}`);
    // What a scrape of /metrics carries (after the memory reading: the text is garbage once measured).
    const scrape = await metrics.text();
    const series = scrape.split('\n').filter((l) => l !== '' && !l.startsWith('#')).length;
    say(
      `metrics: ${series} series, ${(Buffer.byteLength(scrape) / 1024).toFixed(0)} KiB per scrape ` +
        `(--peer-metrics-limit ${peerMetricsLimit})`,
    );
    // And what a read of /status renders (the JSON of the whole status: every peer's row and report).
    const renderStart = performance.now();
    const statusText = statusJson(loop.currentStatus());
    const renderMs = performance.now() - renderStart;
    say(
      `status: ${(Buffer.byteLength(statusText) / 1024).toFixed(0)} KiB of JSON, rendered in ${renderMs.toFixed(1)} ms`,
    );
    snapshot('start');

    // 3. A no-change step (what every resync pays) and a step after one peer changed.
    let before = steps.length;
    const writes0 = kernel.writes;
    loop.trigger('resync');
    await loop.idle();
    const noop = steps.at(-1) as StepRecord;
    say(`no-change step: ${noop.ms} ms, ${kernel.writes - writes0} XFRM writes (${steps.length - before} step)`);
    const changed = Math.floor(peers / 2);
    const writes1 = kernel.writes;
    before = steps.length;
    // A change after a quiet spell: later than the least gap after the no-change step, so it is applied at once.
    await new Promise((r) => setTimeout(r, minStepGapMs));
    t0 = performance.now();
    await cluster.writeOne({ i: changed, spi: 1, gen: 1 });
    // The step that wrote its new SAs (in a cluster, the daemon's own status writes come back as steps too).
    const onePeer = await until(`the new boot ID of peer ${changed}`, () => kernel.writes > writes1);
    await loop.idle();
    say(
      `one peer changed (new boot ID): ${(onePeer.at - t0).toFixed(0)} ms from the write to its step ` +
        `(step ${onePeer.ms} ms), ${kernel.writes - writes1} XFRM writes, ${steps.length - before} step(s)`,
    );

    // 4. Rotation.
    const rotationWritesBefore = await statusWrites(metrics);
    loop.keyEvent({ kind: 'key', key: key(2) });
    await loop.idle();
    const firstRotationStep = steps.length;
    const stopProfile = await allocationProfile();
    const reached = until('SPI 2 to every peer', allOn(2));
    const written = await cluster.writeAll(
      Array.from({ length: peers }, (_, k) => ({ i: k + 1, spi: 2, gen: k + 1 === changed ? 1 : 0 })),
      50,
      spreadMs / 50,
    );
    const done = await reached;
    const rotationWrites = writesBetween(rotationWritesBefore, await statusWrites(metrics));
    await stopProfile();
    t0 = written.first;
    const writtenMs = written.last - written.first;
    const rotationSteps = steps.slice(firstRotationStep).filter((s) => s.at <= done.at);
    const longest = Math.max(...rotationSteps.map((s) => s.ms));
    const rotationMs = done.at - t0;
    say(
      `rotation: ${peers} updates written in ${(writtenMs / 1000).toFixed(2)} s; first update -> every peer on SPI 2 ` +
        `in ${(rotationMs / 1000).toFixed(2)} s (${((rotationMs - writtenMs) / 1000).toFixed(2)} s after the last update), ` +
        `${rotationSteps.length} steps (longest ${longest} ms); this node's status writes from its new key on: ` +
        `${rotationWrites('protocol')} protocol, ${rotationWrites('report')} report(s), ${rotationWrites('worse')} worse`,
    );
    await loop.idle();
    const rssEnd = process.memoryUsage().rss;
    // The most RSS the process held so far (getrusage), before the forced GCs below can raise it.
    const peakRss = process.resourceUsage().maxRSS * 1024;
    gc();
    const end = process.memoryUsage();
    // An idle daemon (steps every 30 s) lets V8's memory reducer give back what the rotation's steps grew. Read
    // before the fakes are measured: their twins are garbage afterwards.
    let idleLine = '';
    let idleRss = 0;
    if (idleMs > 0) {
      await new Promise((r) => setTimeout(r, idleMs));
      const idle = process.memoryUsage();
      idleRss = idle.rss;
      idleLine =
        `memory ${(idleMs / 1000).toFixed(0)} s idle later: RSS ${mib(idle.rss)}, V8 heap used ${mib(idle.heapUsed)} ` +
        `of ${mib(idle.heapTotal)} committed`;
    }
    const fakeEnd = await fakeShare(kernel, dp);
    say(
      `memory after the rotation: RSS ${mib(rssEnd)} (${mib(end.rss)} after a forced full GC), V8 heap used ${mib(end.heapUsed)} of ${mib(end.heapTotal)} ` +
        `committed, external ${mib(end.external)}; ${fakeContents(kernel, dp)} ~${mib(fakeEnd)} of it; RSS less that: ${mib(rssEnd - fakeEnd)}; ` +
        `peak RSS so far ${mib(peakRss)} (${mib(peakRss - fakeEnd)} less the fakes' share); ` +
        cluster.readCost(),
    );
    if (process.env.KMESH_SCALE_DEBUG) say(`# heap spaces: ${heapSpaces()}; resident: ${residentByMapping()}`);
    if (idleLine) say(`${idleLine}; RSS less the fakes' share: ${mib(idleRss - fakeEnd)}`);
    snapshot('end');

    // 5. Acknowledgements: every peer writes its status (it holds SPIs 1 and 2 and sends with 2), as each peer's
    // daemon does several times per rotation; the specs stay as they are.
    const firstAckStep = steps.length;
    const writes2 = kernel.writes;
    const acked = until("every peer's acknowledgement of SPI 2", (s) => {
      const reports = s.peerReports;
      for (let k = 1; k <= peers; k++) if (reports[peerName(k)]?.sendSpis[0] !== 2) return false;
      return true;
    });
    const ackWritten = await cluster.writeStatuses(
      Array.from({ length: peers }, (_, k) => ({
        i: k + 1,
        spi: 2,
        gen: k + 1 === changed ? 1 : 0,
        status: peerStatus([1, 2], [2], peers),
      })),
      50,
      spreadMs / 50,
    );
    const ackDone = await acked;
    await loop.idle();
    const ackSteps = steps.slice(firstAckStep).filter((s) => s.at <= ackDone.at);
    const ackMs = ackDone.at - ackWritten.first;
    const ackWrittenMs = ackWritten.last - ackWritten.first;
    say(
      `acknowledgements: ${peers} status writes in ${(ackWrittenMs / 1000).toFixed(2)} s; first -> every peer's read in ` +
        `${(ackMs / 1000).toFixed(2)} s (${((ackMs - ackWrittenMs) / 1000).toFixed(2)} s after the last), ` +
        `${ackSteps.length} steps (median ${median(ackSteps.map((s) => s.ms))} ms, longest ` +
        `${Math.max(...ackSteps.map((s) => s.ms))} ms), ${kernel.writes - writes2} XFRM writes`,
    );
    // 6. Joins: JOINS new peers, one batch every JOIN_SPREAD_MS / JOINS ms, as nodes come up; each step counts more
    // peers in the status this node reports, which every peer's watch receives when it is written.
    const writesBefore = await statusWrites(metrics);
    const firstJoinStep = steps.length;
    const total = peers + JOINS;
    const joinedAll = until(`a status written with ${total} peers`, (s) => s.peers.length === total);
    const joined = await cluster.joinAll(
      Array.from({ length: JOINS }, (_, k) => peers + 1 + k),
      2,
      JOINS,
      JOIN_SPREAD_MS / JOINS,
    );
    await joinedAll;
    const reported = await until(
      `the status reporting ${total} peers written`,
      (s) => s.keyReport?.peerCount === total && s.statusReportDueInMs === null,
      MAX_REPORT_WAIT_MS,
    );
    const joinWrites = writesBetween(writesBefore, await statusWrites(metrics));
    const joinSteps = steps.slice(firstJoinStep).filter((s) => s.at <= reported.at).length;
    say(
      `joins: ${JOINS} peers joined over ${((joined.last - joined.first) / 1000).toFixed(2)} s, ${joinSteps} steps ` +
        `until the status counted them all (${((reported.at - joined.last) / 1000).toFixed(2)} s after the last); ` +
        `status writes: ${joinWrites('report')} report(s), ${joinWrites('worse')} worse, ${joinWrites('protocol')} protocol, ` +
        `${joinWrites('first')} first ` +
        `(each reaches all ${total - 1} peers' watches, and every node of the cluster writes alike)`,
    );
    say(
      `scale N=${peers}: RSS ${mib(rssStart - fakeStart)} after the start, ${mib(rssEnd - fakeEnd)} after the rotation ` +
        `(the daemon's: less what the fakes hold for the kernel; ${mib(rssStart)} and ${mib(rssEnd)} with it), ` +
        `start ${(startMs / 1000).toFixed(2)} s, no-change step ${noop.ms} ms, rotation ${(rotationMs / 1000).toFixed(2)} s ` +
        `in ${rotationSteps.length} steps (least gap between steps ${minStepGapMs} ms), acknowledgements ` +
        `${(ackMs / 1000).toFixed(2)} s in ${ackSteps.length} steps, ${JOINS} joins: ` +
        `${joinWrites('report') + joinWrites('worse') + joinWrites('protocol') + joinWrites('first')} status writes in ` +
        `${joinSteps} steps`,
    );
  } finally {
    await loop.stop();
    await cluster.stop();
  }
}

/**
 * Bytes of memory the fakes' contents take (the XFRM kernel's SAs and policies, the datapath's BPF maps), which
 * a real daemon leaves to the kernel: measured by building twins holding the same (the XFRM objects seeded as
 * another tool's, the maps by the same calls), and dropping them.
 */
async function fakeShare(kernel: FakeXfrmKernel, dp: FakeDatapath): Promise<number> {
  const states = kernel.listStates();
  const policies = kernel.listPolicies();
  await new Promise((r) => setImmediate(r));
  gc();
  const base = process.memoryUsage();
  // The twins live only inside this call.
  const holding = async (): Promise<NodeJS.MemoryUsage> => {
    const twin = new FakeXfrmKernel({ recordOps: false });
    for (const s of states) twin.seedState(s);
    for (const p of policies) twin.seedPolicy(p);
    const maps = await dp.twin();
    await new Promise((r) => setImmediate(r));
    gc();
    const usage = process.memoryUsage();
    // Used after the reading: an object no later code uses is not kept across the await above.
    if (twin.writes !== 0) throw new Error('the twin kernel counted a write');
    if (maps.peers.size !== dp.peers.size) throw new Error('the twin datapath holds other peers');
    return usage;
  };
  const withTwin = await holding();
  const bytes = withTwin.heapUsed - base.heapUsed + (withTwin.external - base.external);
  return Math.max(0, bytes);
}

/** What the fakes hold for the kernel, in words. */
function fakeContents(kernel: FakeXfrmKernel, dp: FakeDatapath): string {
  return (
    `the fake kernel's ${kernel.listStates().length} SAs + ${kernel.listPolicies().length} policies and the fake ` +
    `datapath's maps (${dp.peers.size} peers, ${dp.remoteCidrs.length} CIDRs)`
  );
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      source: { type: 'string', default: 'dir' },
      peers: { type: 'string', default: '5000' },
      'spread-ms': { type: 'string', default: '3000' },
      'idle-ms': { type: 'string', default: '0' },
      'min-step-gap-ms': { type: 'string', default: String(DEFAULT_MIN_STEP_GAP_MS) },
      'peer-metrics-limit': { type: 'string', default: String(DEFAULT_PEER_METRICS_LIMIT) },
    },
  });
  const sourceKind = values.source;
  if (sourceKind !== 'dir' && sourceKind !== 'kube') throw new Error(`--source ${sourceKind} is not dir or kube`);
  const peers = Number(values.peers);
  const spreadMs = Number(values['spread-ms']);
  if (!Number.isInteger(peers) || peers < 1 || peers > 60000)
    throw new Error(`--peers ${values.peers} is not 1..60000`);
  if (!Number.isFinite(spreadMs) || spreadMs < 0) throw new Error(`--spread-ms ${values['spread-ms']} is not >= 0`);
  const idleMs = Number(values['idle-ms']);
  if (!Number.isFinite(idleMs) || idleMs < 0 || idleMs > 600_000)
    throw new Error(`--idle-ms ${values['idle-ms']} is not 0..600000`);
  const minStepGapMs = Number(values['min-step-gap-ms']);
  if (!Number.isInteger(minStepGapMs) || minStepGapMs < 0 || minStepGapMs > MAX_MIN_STEP_GAP_MS)
    throw new Error(`--min-step-gap-ms ${values['min-step-gap-ms']} is not 0..${MAX_MIN_STEP_GAP_MS}`);
  const peerMetricsLimit = Number(values['peer-metrics-limit']);
  if (!Number.isInteger(peerMetricsLimit) || peerMetricsLimit < 0 || peerMetricsLimit > MAX_PEER_METRICS_LIMIT)
    throw new Error(`--peer-metrics-limit ${values['peer-metrics-limit']} is not 0..${MAX_PEER_METRICS_LIMIT}`);
  const code = await underDaemonMemorySettings();
  if (code !== undefined) return code;
  say(`# ${describeMemorySettings()}`);
  setFlagsFromString('--expose-gc');
  await bench({ source: sourceKind, peers, spreadMs, idleMs, minStepGapMs, peerMetricsLimit });
  return 0;
}

main().then(
  (code) => (process.exitCode = code),
  (e: unknown) => {
    console.error(`scale bench: ${e instanceof Error ? e.message : String(e)}`);
    process.exitCode = 1;
  },
);
