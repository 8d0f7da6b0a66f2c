// Acknowledged retirement under a fault (issue 12 item 2), in the kernel-test VM: three nodes with real daemons
// and ESP under continuous traffic; node-3's view of the cluster is frozen (its watch stalled: it still writes
// its KmeshNodeInfo and still gets the key file) across a rotation for four times the grace period. With the
// default rule the others keep the old SPI's inbound SAs for node-3 until it catches up and reports: zero
// packets lost, zero XFRM error deltas, old SAs gone once it reports. The same run with
// --rotation-retirement=timer (the old rule) must remove them under node-3 and lose its packets.
import path from 'node:path';
import t from 'tap';
import { DaemonRunner } from '../../../src/demo/daemons.js';
import { espSupport } from '../../../src/demo/esp-support.js';
import { NetnsCluster, nth, podOf, type SimNode } from '../../../src/demo/netns-cluster.js';
import { ping, xfrmErrorDelta, xfrmStat, type PingResult } from '../../../src/demo/probes.js';
import { run, runOk, sleep, waitFor } from '../../../src/demo/shell.js';
import type { DaemonStatus } from '../../../src/daemon/status.js';
import { FrozenViewStore } from '../lib/frozen-view-store.js';
import { seedCluster } from '../lib/seed-cluster.js';

const GRACE_S = 5;
const FREEZE_MS = 4 * GRACE_S * 1000;

const esp = process.getuid?.() === 0 ? await espSupport() : { ok: false as const, reason: 'not root' };
const skip = esp.ok
  ? {}
  : { skip: `kernel cannot run ESP here (${esp.reason}); this suite runs in the kernel-test VM` };

interface Outcome {
  lost: number;
  sent: number;
  errorDeltas: Record<string, number>[];
  /** node-1 still held node-3's inbound SA for SPI 1 at the end of the freeze. */
  keptDuringFreeze: boolean;
  /** node-1's pending retirement named node-3 during the freeze. */
  waitingForNode3: boolean;
  /** Milliseconds from the thaw until SPI 1 was gone on every node (undefined: not within 90 s). */
  goneAfterThawMs: number | undefined;
  log: string[];
}

function inboundSpi1From(states: string, from: string, to: string): boolean {
  return states.split(/\n(?=src )/).some((b) => b.startsWith(`src ${from} dst ${to}`) && b.includes('spi 0x00000001'));
}

async function frozenRotation(work: string, prefix: string, rule: 'acknowledged' | 'timer'): Promise<Outcome> {
  const cluster = new NetnsCluster({ prefix, nodes: 3, podsPerNode: 1, podNamespace: () => 'default' });
  const [n1, n2, n3] = cluster.nodes as [SimNode, SimNode, SimNode];
  const store = new FrozenViewStore(path.join(work, 'store'), n3.name, [n1.name, n2.name]);
  const daemons = new DaemonRunner({
    workDir: path.join(work, 'daemons'),
    store,
    rotationGraceSeconds: GRACE_S,
    extraFlags: [`--rotation-retirement=${rule}`],
  });
  const log: string[] = [];
  const statuses = (): Promise<(DaemonStatus | undefined)[]> =>
    Promise.all(cluster.nodes.map((n) => daemons.status(n)));
  const advertising = async (spi: number, nodes: SimNode[]) =>
    (await Promise.all(nodes.map((n) => daemons.status(n)))).every((s) => s?.advertisedSpi === spi);
  try {
    await cluster.create();
    await store.prepare();
    await seedCluster(store, cluster);
    for (const n of cluster.nodes) await daemons.start(n);
    const created = await store.kmeshctl(['secret', 'create']);
    if (created.code !== 0) throw new Error(`kmeshctl secret create: ${created.stderr}`);
    const converged = await store.kmeshctl(['ipsec', 'status', '--wait', '--timeout', '240']);
    log.push(converged.stdout.trim().split('\n').at(-1) ?? '');
    if (converged.code !== 0) throw new Error(`not converged on SPI 1: ${converged.stderr}`);

    const pairs = cluster.nodes.flatMap((a) => cluster.nodes.filter((b) => b !== a).map((b) => [a, b] as const));
    // Warm-up as the e2e suites do: programs attached and every pair answering before the counters are read.
    await waitFor(
      'encrypt attachments',
      async () =>
        (await statuses()).every((s) => s?.attachments.some((a) => a.program === 'encrypt' && a.ifname === 'vp0')),
      60_000,
      300,
    );
    await waitFor(
      'every pair answering',
      async () =>
        (await Promise.all(pairs.map(([a, b]) => ping(podOf(a, 0).netns, podOf(b, 0).ip, 2, 0.2)))).every(
          (p) => p.received === p.transmitted,
        ),
      60_000,
      500,
    );
    // The experiment starts from a settled cluster: two seconds of pings between every pair with no XFRM error
    // counter moving on any node (what it saw until then is logged). Since the seventh session nothing should
    // move after the converged verdict (e2e-converged asserts it); before, a node could still be without a peer
    // it had not seen yet and drop its packets (XfrmInNoPols 25 on two nodes, docs/benchmarks.md).
    await waitFor(
      'two quiet seconds of traffic between every pair',
      async () => {
        const s0 = await Promise.all(cluster.nodes.map((n) => xfrmStat(n.netns)));
        const p = await Promise.all(pairs.map(([a, b]) => ping(podOf(a, 0).netns, podOf(b, 0).ip, 20, 0.1)));
        const s1 = await Promise.all(cluster.nodes.map((n) => xfrmStat(n.netns)));
        const d = cluster.nodes.map((_, i) => xfrmErrorDelta(nth(s0, i), nth(s1, i)));
        const lost = p.reduce((a, r) => a + r.transmitted - r.received, 0);
        const quiet = lost === 0 && d.every((x) => Object.keys(x).length === 0);
        if (!quiet) log.push(`warm-up not yet settled: ${lost} pings lost, XFRM error deltas ${JSON.stringify(d)}`);
        return quiet;
      },
      90_000,
      0,
    );
    const before = await Promise.all(cluster.nodes.map((n) => xfrmStat(n.netns)));
    const phase = async (what: string): Promise<void> => {
      const now = await Promise.all(cluster.nodes.map((n) => xfrmStat(n.netns)));
      const d = cluster.nodes.map((_, i) => xfrmErrorDelta(nth(before, i), nth(now, i)));
      log.push(`${what}: XFRM error deltas ${JSON.stringify(d)}`);
    };
    const count = Math.round((FREEZE_MS + 40_000) / 100);
    const traffic: Promise<PingResult[]> = Promise.all(
      pairs.map(([a, b]) => ping(podOf(a, 0).netns, podOf(b, 0).ip, count, 0.1)),
    );
    await sleep(1000);
    await phase('traffic running 1 s, before the freeze');
    await store.freeze();
    const rotated = await store.kmeshctl(['secret', 'create']);
    log.push(`rotation: ${rotated.stdout.trim()}${rotated.stderr.trim()}`);
    await waitFor('every node to advertise SPI 2', () => advertising(2, cluster.nodes), 120_000, 300);
    await phase('every node advertises SPI 2 (node-3 frozen)');
    const frozenAt = Date.now();
    let waitingForNode3 = false;
    let keptDuringFreeze = true;
    while (Date.now() - frozenAt < FREEZE_MS) {
      const s1 = await daemons.status(n1);
      if (s1?.pendingRetirements.some((p) => p.spi === 1 && p.waitingFor.includes(n3.name)) === true) {
        waitingForNode3 = true;
      }
      await sleep(1000);
    }
    for (const n of [n1, n2]) {
      const states = await runOk('ip', ['-n', n.netns, 'xfrm', 'state']);
      if (!inboundSpi1From(states, n3.underlayIp, n.underlayIp)) keptDuringFreeze = false;
    }
    await phase('end of the freeze');
    const st3 = await daemons.status(n3);
    log.push(`end of freeze: node-3 sends with ${JSON.stringify(st3?.keyReport?.sendSpis)}`);
    await store.thaw();
    const thawedAt = Date.now();
    let goneAfterThawMs: number | undefined;
    try {
      await waitFor(
        'SPI 1 gone on every node',
        async () => {
          for (const n of cluster.nodes) {
            if (/spi 0x00000001 /.test(await runOk('ip', ['-n', n.netns, 'xfrm', 'state']))) return false;
          }
          return true;
        },
        90_000,
        250,
      );
      goneAfterThawMs = Date.now() - thawedAt;
      await phase('SPI 1 gone everywhere');
    } catch (err) {
      log.push((err as Error).message);
    }
    const pings = await traffic;
    await phase('traffic done');
    log.push(`lost per pair: ${pings.map((p) => `${p.from}->${p.to} ${p.transmitted - p.received}`).join(', ')}`);
    const after = await Promise.all(cluster.nodes.map((n) => xfrmStat(n.netns)));
    const final = await store.kmeshctl(['ipsec', 'status']);
    log.push(final.stdout.trim());
    for (const s of await statuses()) log.push(`${s?.node ?? '?'}: problems ${JSON.stringify(s?.problems ?? [])}`);
    return {
      lost: pings.reduce((a, p) => a + p.transmitted - p.received, 0),
      sent: pings.reduce((a, p) => a + p.transmitted, 0),
      errorDeltas: cluster.nodes.map((_, i) => xfrmErrorDelta(nth(before, i), nth(after, i))),
      keptDuringFreeze,
      waitingForNode3,
      goneAfterThawMs,
      log,
    };
  } catch (err) {
    for (const n of cluster.nodes) log.push(`--- ${n.name}\n${await daemons.logTail(n, 30)}`);
    throw Object.assign(err as Error, { log });
  } finally {
    await daemons.stopAll();
    await cluster.destroy();
    await store.destroy();
    await run('rm', ['-rf', ...cluster.nodes.map((n) => `/sys/fs/bpf/${n.netns}`)]);
  }
}

t.test(
  'acknowledged retirement: a frozen peer keeps its old SAs, zero loss, old SAs gone once it reports',
  skip,
  async (t) => {
    const o = await frozenRotation(t.testdir(), 'kka', 'acknowledged');
    for (const l of o.log) t.comment(l);
    t.ok(o.waitingForNode3, "node-1's /status: SPI 1 waits for node-3, which still sends with it");
    t.ok(
      o.keptDuringFreeze,
      `node-1 and node-2 kept node-3's SPI 1 inbound SAs for ${FREEZE_MS / 1000} s (grace ${GRACE_S} s)`,
    );
    t.equal(o.lost, 0, `zero packets lost (${o.sent} sent)`);
    t.same(o.errorDeltas, [{}, {}, {}], 'zero XFRM error counter deltas');
    t.ok(
      o.goneAfterThawMs !== undefined,
      `SPI 1 gone everywhere ${String(o.goneAfterThawMs)} ms after node-3 caught up`,
    );
  },
);

t.test('the old timer rule fails the same fault (why retirement needs acknowledgements)', skip, async (t) => {
  const o = await frozenRotation(t.testdir(), 'kkt', 'timer');
  for (const l of o.log) t.comment(l);
  t.notOk(o.keptDuringFreeze, "the timer removed node-3's SPI 1 inbound SAs while node-3 still sent with SPI 1");
  const inNoStates = o.errorDeltas.reduce((a, d) => a + (d.XfrmInNoStates ?? 0), 0);
  t.ok(o.lost > 0 && inNoStates > 0, `packets lost: ${o.lost} of ${o.sent}, XfrmInNoStates moved by ${inNoStates}`);
});
