// `npm run bench:daemon`: figures for the node daemon on the three-node demo cluster (directory store,
// real daemons through start_kmesh.sh, real XFRM; inside the kernel-test VM when the host cannot do ESP).
//  1. secret change -> new SPI in use on every node: the initial key (SPI 1) is the baseline, then key
//     rotations are timed; printed as seconds and as a ratio to the baseline. After each rotation, the time
//     from the last node switching until the old SPI's SAs are gone on every node, in resync intervals
//     (acknowledged retirement; KMESH_BENCH_RETIREMENT=timer measures the old grace-bound rule instead).
//  2. daemon memory: RSS of one daemon with its 2 real peers (baseline) and with 100 peers (98 more
//     KmeshNodeInfo objects added to the store, each getting SAs and policies); printed with the ratio.
// Prints figures only; nothing here asserts on time.
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { packageRoot } from '../../src/native/addon.js';
import { DirClusterStore } from '../../src/demo/cluster-store.js';
import { allOnSpi, DaemonRunner } from '../../src/demo/daemons.js';
import { espSupport } from '../../src/demo/esp-support.js';
import { NetnsCluster, nth } from '../../src/demo/netns-cluster.js';
import { runOk, waitFor } from '../../src/demo/shell.js';

const say = (s: string): void => void process.stdout.write(`${s}\n`);

async function daemonRss(pidOfScript: number): Promise<number> {
  // start_kmesh.sh (pid given) runs node as its child: read the child's VmRSS.
  const children = (await fsp.readFile(`/proc/${pidOfScript}/task/${pidOfScript}/children`, 'utf8'))
    .trim()
    .split(/\s+/);
  const child = children[0];
  if (child === undefined || child === '') throw new Error('start_kmesh.sh has no daemon child');
  const status = await fsp.readFile(`/proc/${child}/status`, 'utf8');
  const kb = Number(/VmRSS:\s+(\d+) kB/.exec(status)?.[1] ?? NaN);
  return kb / 1024;
}

/** Grace period of the bench daemons: what the timer rule waits; acknowledged retirement waits min(5 s, it). */
const GRACE_S = 30;
/** DaemonRunner's --resync-interval. */
const RESYNC_S = 5;

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] ?? NaN;
}

async function bench(): Promise<void> {
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
    const rss2 = await daemonRss(nth(pids, 0));
    const extra = 98;
    const spi = 4;
    for (let k = 0; k < extra; k++) {
      const name = `peer-${String(k).padStart(3, '0')}`;
      const info = {
        apiVersion: 'kmesh.net/v1alpha1',
        kind: 'KmeshNodeInfo',
        metadata: { name, namespace: 'kmesh-system' },
        spec: {
          spi,
          addresses: [`198.19.${Math.floor(k / 200)}.${(k % 200) + 10}`],
          bootID: `550e8400-e29b-41d4-a716-${String(446655440000 + k).padStart(12, '0')}`,
          podCIDRS: [`10.245.${k}.0/24`],
        },
      };
      await fsp.mkdir(path.join(store.dir, 'kmeshnodeinfos'), { recursive: true });
      await fsp.writeFile(path.join(store.dir, 'kmeshnodeinfos', `${name}.json`), JSON.stringify(info));
    }
    const t0 = Date.now();
    await waitFor(
      'node-1 to reach 100 peers',
      async () => {
        const s = await daemons.status(n1);
        return s !== undefined && s.peers.length === 100 && s.peers.every((p) => p.outboundSpi === spi);
      },
      600_000,
      500,
    );
    const converge100 = (Date.now() - t0) / 1000;
    await new Promise((r) => setTimeout(r, 3000));
    const rss100 = await daemonRss(nth(pids, 0));
    const sas = (await runOk('ip', ['-n', n1.netns, 'xfrm', 'state', 'count'])).trim();
    say(`daemon RSS with 2 peers (baseline): ${rss2.toFixed(1)} MiB`);
    say(
      `daemon RSS with 100 peers: ${rss100.toFixed(1)} MiB = ${(rss100 / rss2).toFixed(2)}x baseline (${sas}; 98 new peers reconciled in ${converge100.toFixed(1)} s)`,
    );
  } finally {
    await daemons.stopAll();
    for (const n of cluster.nodes) await daemons.uninstall(n);
    await cluster.destroy();
    await fsp.rm(work, { recursive: true, force: true });
  }
}

async function main(): Promise<number> {
  if (process.getuid?.() !== 0) {
    say('bench:daemon needs root');
    return 1;
  }
  if (!process.argv.includes('--in-vm')) {
    const esp = await espSupport();
    if (!esp.ok) {
      say(
        `host kernel ${os.release()} cannot run ESP (${esp.reason}); running the benchmark in the kernel-test VM (TCG: absolute times are slower than on hardware)`,
      );
      const runner = (await import(
        path.join(packageRoot(), 'dist', 'test', 'vm', 'runner.js')
      )) as typeof import('../vm/runner.js');
      const r = await runner.runInVm({
        kernel: '6.12',
        command: 'node dist/test/bench/daemon.js --in-vm',
        timeoutMs: 30 * 60_000,
        memoryMb: 1536,
        ...(process.env.KMESH_BENCH_RETIREMENT !== undefined
          ? { env: { KMESH_BENCH_RETIREMENT: process.env.KMESH_BENCH_RETIREMENT } }
          : {}),
        onOutput: (t) => process.stdout.write(t),
      });
      return r.exitCode;
    }
  }
  await bench();
  return 0;
}

process.exitCode = await main();
