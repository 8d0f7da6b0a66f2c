// `npm run bench:daemon`: figures for the node daemon on the three-node demo cluster (directory store,
// real daemons through start_kmesh.sh, real XFRM; inside the kernel-test VM when the host cannot do ESP).
//  1. secret change -> new SPI in use on every node: the initial key (SPI 1) is the baseline, then key
//     rotations are timed; printed as seconds and as a ratio to the baseline. After each rotation, the time
//     from the last node switching until the old SPI's SAs are gone on every node, in resync intervals
//     (acknowledged retirement; KMESH_BENCH_RETIREMENT=timer measures the old grace-bound rule instead).
//  2. daemon memory: RSS of one daemon with its 2 real peers (baseline) and with 100 peers (98 more
//     KmeshNodeInfo objects added to the store, each getting SAs and policies; --peers N for another count, e.g.
//     5000: the real daemon, started as users start it, beside bench:scale's in-process estimate); printed with
//     the ratio. Then a rotation among them (a new key; the added peers advertise it, as their daemons would):
//     the RSS with both keys' SAs held, right when every peer is reached and again after REST_MS of rest (no
//     change arriving: what V8 and malloc give back once the steps stop; the old key's SAs are still held, as
//     the count printed with it shows), and the peak RSS (VmHWM): up to the 5,000-peer reading, and from the
//     rotation's start (reset there through /proc/PID/clear_refs), so the figures say which part sets the run's peak.
// Prints figures only; nothing here asserts on time.
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { DirClusterStore } from '../../src/demo/cluster-store.js';
import { allOnSpi, DaemonRunner } from '../../src/demo/daemons.js';
import { NetnsCluster, nth } from '../../src/demo/netns-cluster.js';
import { runOk, waitFor } from '../../src/demo/shell.js';
import { runInVmWithoutEsp } from './esp-or-vm.js';
import { median } from './median.js';

const say = (s: string): void => void process.stdout.write(`${s}\n`);

/** The rest after a rotation before the second RSS reading: well inside the retirement grace (30 s). */
const REST_MS = 10_000;

/** The daemon process that start_kmesh.sh (pid given) runs as its child. */
async function daemonPid(pidOfScript: number): Promise<string> {
  const children = (await fsp.readFile(`/proc/${pidOfScript}/task/${pidOfScript}/children`, 'utf8'))
    .trim()
    .split(/\s+/);
  const child = children[0];
  if (child === undefined || child === '') throw new Error('start_kmesh.sh has no daemon child');
  return child;
}

/** The daemon's RSS and its peak so far (VmRSS, VmHWM), in MiB. */
async function daemonMemory(pidOfScript: number): Promise<{ rss: number; peak: number }> {
  const status = await fsp.readFile(`/proc/${await daemonPid(pidOfScript)}/status`, 'utf8');
  const kb = (field: string): number => Number(new RegExp(`${field}:\\s+(\\d+) kB`).exec(status)?.[1] ?? NaN);
  return { rss: kb('VmRSS') / 1024, peak: kb('VmHWM') / 1024 };
}

/** The KmeshNodeInfo of added peer k (0-based, below 12,800): underlay 198.19.0.0/16, pod CIDRs in 10.100.0.0/14. */
function addedPeer(k: number, spi: number): { name: string; info: object } {
  const name = `peer-${String(k).padStart(5, '0')}`;
  return {
    name,
    info: {
      apiVersion: 'kmesh.net/v1alpha1',
      kind: 'KmeshNodeInfo',
      metadata: { name, namespace: 'kmesh-system' },
      spec: {
        spi,
        addresses: [`198.19.${Math.floor(k / 200)}.${(k % 200) + 10}`],
        bootID: `550e8400-e29b-41d4-a716-${String(446655440000 + k).padStart(12, '0')}`,
        podCIDRS: [`10.${100 + (k >> 8)}.${k & 0xff}.0/24`],
      },
    },
  };
}

/** Grace period of the bench daemons: what the timer rule waits; acknowledged retirement waits min(5 s, it). */
const GRACE_S = 30;
/** DaemonRunner's --resync-interval. */
const RESYNC_S = 5;

async function bench(peers: number): Promise<void> {
  const work = await fsp.mkdtemp(path.join(os.tmpdir(), 'kmesh-bench-'));
  const store = new DirClusterStore(path.join(work, 'store'));
  const cluster = new NetnsCluster({ prefix: 'kmb', nodes: 3, podsPerNode: 1 });
  const rule = process.env.KMESH_BENCH_RETIREMENT === 'timer' ? 'timer' : 'acknowledged';
  const daemons = new DaemonRunner({
    workDir: work,
    store,
    rotationGraceSeconds: GRACE_S,
    logLevel: 'warn',
    extraFlags: [`--rotation-retirement=${rule}`],
  });
  const oldGone = async (spi: number): Promise<number> => {
    const t0 = Date.now();
    const hex = `spi 0x${spi.toString(16).padStart(8, '0')} `;
    await waitFor(
      `SPI ${spi} SAs gone everywhere`,
      async () => {
        for (const n of cluster.nodes)
          if ((await runOk('ip', ['-n', n.netns, 'xfrm', 'state'])).includes(hex)) return false;
        return true;
      },
      300_000,
      100,
    );
    return (Date.now() - t0) / 1000;
  };
  const statuses = () => Promise.all(cluster.nodes.map((n) => daemons.status(n)));
  const timeToSpi = async (spi: number): Promise<number> => {
    const t0 = Date.now();
    const r = await store.kmeshctl(['secret', 'create']);
    if (r.code !== 0) throw new Error(`kmeshctl: ${r.stderr.trim()}`);
    await waitFor(`SPI ${spi} everywhere`, async () => allOnSpi(await statuses(), spi, 3), 300_000, 100);
    return (Date.now() - t0) / 1000;
  };
  try {
    await cluster.create();
    for (const n of cluster.nodes) await store.put('nodes', cluster.nodeObject(n));
    const pids: number[] = [];
    for (const n of cluster.nodes) pids.push(await daemons.start(n));
    await waitFor('daemons synced', async () => (await statuses()).every((s) => s?.synced === true), 180_000, 200);

    const baseline = await timeToSpi(1);
    say(`secret -> SPI in use on all 3 nodes, initial key (baseline): ${baseline.toFixed(2)} s`);
    const rotations: number[] = [];
    const retired: number[] = [];
    for (const spi of [2, 3, 4]) {
      const s = await timeToSpi(spi);
      rotations.push(s);
      const g = await oldGone(spi - 1);
      retired.push(g);
      say(
        `  rotation to SPI ${spi}: ${s.toFixed(2)} s (${(s / baseline).toFixed(2)}x baseline); SPI ${spi - 1} SAs gone everywhere ${g.toFixed(2)} s after the last node switched`,
      );
    }
    say(
      `secret change -> new SPI in use on every node, median of ${rotations.length} rotations: ${median(rotations).toFixed(2)} s = ${(median(rotations) / baseline).toFixed(2)}x the initial-key baseline`,
    );
    say(
      `last node switched -> old SAs gone on every node (${rule} retirement, grace ${GRACE_S} s, resync ${RESYNC_S} s), median: ${median(retired).toFixed(2)} s = ${(median(retired) / RESYNC_S).toFixed(2)} resync intervals`,
    );

    const n1 = nth(cluster.nodes, 0);
    const rss2 = (await daemonMemory(nth(pids, 0))).rss;
    const extra = peers - 2;
    const infos = path.join(store.dir, 'kmeshnodeinfos');
    await fsp.mkdir(infos, { recursive: true });
    // The added peers' objects are written aside first (untimed), then moved into the store by one rename each
    // without yielding: the updates arrive within a moment, as a rotation's watch events would. Written one by one
    // into the store, each awaited, the writer competed with three daemons for the VM's one CPU and took most of
    // the timed rotation (the seventh session's 1,889 s at 5,000 peers).
    const staging = path.join(work, 'staging');
    const stageAdded = async (spi: number): Promise<void> => {
      await fsp.mkdir(staging, { recursive: true });
      for (let k = 0; k < extra; k++) {
        const { name, info } = addedPeer(k, spi);
        await fsp.writeFile(path.join(staging, `${name}.json`), JSON.stringify(info));
      }
    };
    /** Moves the staged objects into the store (renamed whole: the daemon never reads half a file); seconds taken. */
    const publishAdded = (): number => {
      const t = Date.now();
      for (const f of fs.readdirSync(staging)) fs.renameSync(path.join(staging, f), path.join(infos, f));
      return (Date.now() - t) / 1000;
    };
    const reached = (spi: number) => async (): Promise<boolean> => {
      const s = await daemons.status(n1);
      return (
        s !== undefined &&
        s.advertisedSpi === spi &&
        s.peers.length === peers &&
        s.peers.every((p) => p.outboundSpi === spi)
      );
    };
    let spi = 4;
    await stageAdded(spi);
    const t0 = Date.now();
    const published = publishAdded();
    await waitFor(`node-1 to reach ${peers} peers`, reached(spi), 1_800_000, 500);
    const converge = (Date.now() - t0) / 1000;
    await new Promise((r) => setTimeout(r, 3000));
    const withPeers = await daemonMemory(nth(pids, 0));
    const sas = (await runOk('ip', ['-n', n1.netns, 'xfrm', 'state', 'count'])).trim();
    say(`daemon RSS with 2 peers (baseline): ${rss2.toFixed(1)} MiB`);
    say(
      `daemon RSS with ${peers} peers: ${withPeers.rss.toFixed(1)} MiB = ${(withPeers.rss / rss2).toFixed(2)}x baseline (${sas}; ${extra} new peers reconciled in ${converge.toFixed(1)} s; their objects moved into the store in ${published.toFixed(1)} s); peak RSS so far (VmHWM) ${withPeers.peak.toFixed(1)} MiB`,
    );
    // The peak is read again after the rotation, counted from here: which part of the run sets it.
    await fsp.writeFile(`/proc/${await daemonPid(nth(pids, 0))}/clear_refs`, '5');
    // A rotation among them: the three daemons take the new key, the added peers advertise it as theirs would.
    spi = 5;
    await stageAdded(spi);
    const t1 = Date.now();
    const r = await store.kmeshctl(['secret', 'create']);
    if (r.code !== 0) throw new Error(`kmeshctl: ${r.stderr.trim()}`);
    const republished = publishAdded();
    await waitFor(`node-1 sending with SPI ${spi} to all ${peers} peers`, reached(spi), 1_800_000, 500);
    const rotated = (Date.now() - t1) / 1000;
    const afterRotation = await daemonMemory(nth(pids, 0));
    const heldSas = (await runOk('ip', ['-n', n1.netns, 'xfrm', 'state', 'count'])).trim();
    say(
      `daemon RSS after a rotation among ${peers} peers: ${afterRotation.rss.toFixed(1)} MiB (${heldSas}: both keys held; every peer on SPI ${spi} ${rotated.toFixed(1)} s after the secret change, its ${extra} peer updates moved into the store in ${republished.toFixed(1)} s); peak RSS during the rotation (VmHWM, reset at its start) ${afterRotation.peak.toFixed(1)} MiB, of the run ${Math.max(withPeers.peak, afterRotation.peak).toFixed(1)} MiB`,
    );
    await new Promise((r) => setTimeout(r, REST_MS));
    const rested = await daemonMemory(nth(pids, 0));
    const restedSas = (await runOk('ip', ['-n', n1.netns, 'xfrm', 'state', 'count'])).trim();
    say(
      `daemon RSS ${REST_MS / 1000} s later, at rest: ${rested.rss.toFixed(1)} MiB (${restedSas}); peak RSS since the rotation began (VmHWM) ${rested.peak.toFixed(1)} MiB, of the run ${Math.max(withPeers.peak, rested.peak).toFixed(1)} MiB`,
    );
  } finally {
    await daemons.stopAll();
    for (const n of cluster.nodes) await daemons.uninstall(n);
    await cluster.destroy();
    await fsp.rm(work, { recursive: true, force: true });
  }
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: { peers: { type: 'string', default: '100' }, 'in-vm': { type: 'boolean', default: false } },
  });
  const peers = Number(values.peers);
  if (!Number.isInteger(peers) || peers < 3 || peers > 12_802) {
    say(`--peers ${values.peers}: expected a whole number of peers from 3 to 12802`);
    return 2;
  }
  if (process.getuid?.() !== 0) {
    say('bench:daemon needs root');
    return 1;
  }
  if (!values['in-vm']) {
    const inVm = await runInVmWithoutEsp(
      {
        command: `node dist/test/bench/daemon.js --in-vm --peers ${peers}`,
        // 5,000 peers: three daemons each install 25,000 objects and rotate them, under TCG.
        timeoutMs: (peers > 1000 ? 90 : 30) * 60_000,
        memoryMb: peers > 1000 ? 3072 : 1536,
        ...(process.env.KMESH_BENCH_RETIREMENT !== undefined
          ? { env: { KMESH_BENCH_RETIREMENT: process.env.KMESH_BENCH_RETIREMENT } }
          : {}),
      },
      say,
    );
    if (inVm !== undefined) return inVm;
  }
  await bench(peers);
  return 0;
}

process.exitCode = await main();
