// End-to-end scenarios per address family (issue 13 item 1): three nodes, one managed and one unmanaged pod
// each, IPv6 only or dual-stack, one kmesh-daemon per node with the directory store. Asserted per family and
// per ordered pair of nodes: ESP with the expected SPI between the nodes' underlay addresses of that family,
// no managed pod packet in clear, unmanaged pods in clear, and a rotation under continuous traffic in every
// family at once with zero loss and zero XFRM error deltas. A dual-stack pair gets one tunnel per family and
// no SA or policy mixes families; every node publishes its InternalIPs of all families in KmeshNodeInfo.
import type { DaemonStatus } from '../../../src/daemon/status.js';
import type { ClusterStore } from '../../../src/demo/cluster-store.js';
import { allOnSpi, DaemonRunner } from '../../../src/demo/daemons.js';
import { NetnsCluster, nth, podOf } from '../../../src/demo/netns-cluster.js';
import { capture, espPackets, ping, xfrmErrorDelta, xfrmStat, type PingResult } from '../../../src/demo/probes.js';
import { runOk, sleep, waitFor } from '../../../src/demo/shell.js';
import type { Family } from '../../../src/model/ip-address.js';
import type { Checker } from './e2e-scenarios.js';
import { seedCluster } from './seed-cluster.js';

export interface FamilySetup {
  prefix: string;
  workDir: string;
  store: ClusterStore;
  families: readonly Family[];
}

const familyName = (f: Family): string => `IPv${f}`;
const isV6 = (address: string): boolean => address.includes(':');

/** "src A dst B" endpoint pairs of `ip xfrm state` or the tmpl lines of `ip xfrm policy`. */
function endpointPairs(listing: string): [string, string][] {
  return [...listing.matchAll(/src (\S+) dst (\S+)/g)].map((m) => [m[1] ?? '', m[2] ?? '']);
}

export async function runFamilyScenarios(setup: FamilySetup, c: Checker): Promise<void> {
  const { store, families } = setup;
  const cluster = new NetnsCluster({
    prefix: setup.prefix,
    nodes: 3,
    podsPerNode: 2,
    podNamespace: (n) => (n === 0 ? 'default' : 'plain'),
    families,
  });
  const daemons = new DaemonRunner({ workDir: setup.workDir, store, rotationGraceSeconds: 5 });
  const statuses = (): Promise<(DaemonStatus | undefined)[]> =>
    Promise.all(cluster.nodes.map((n) => daemons.status(n)));
  const waitSpi = async (spi: number): Promise<boolean> => {
    try {
      await waitFor(
        `SPI ${spi} everywhere`,
        async () => allOnSpi(await statuses(), spi, cluster.nodes.length),
        240_000,
        300,
      );
      return true;
    } catch (err) {
      c.log((err as Error).message);
      for (const n of cluster.nodes)
        c.log(`--- ${n.name} status: ${JSON.stringify(await daemons.status(n))}\n${await daemons.logTail(n)}`);
      return false;
    }
  };
  const pairs = cluster.nodes.flatMap((a) => cluster.nodes.filter((b) => b !== a).map((b) => [a, b] as const));
  /** Pings from pod `i` of a to pod `i` of b in every family, all at once. */
  const pingAll = (i: number, count: number, intervalS: number): Promise<PingResult[]> =>
    Promise.all(
      pairs.flatMap(([a, b]) =>
        families.map((_, k) => ping(podOf(a, i).netns, nth(podOf(b, i).ips, k), count, intervalS)),
      ),
    );
  const espSeen = (lines: string[], spi: number): string[] => {
    const missing: string[] = [];
    for (const [a, b] of pairs) {
      for (const [k, f] of families.entries()) {
        const src = nth(a.underlayIps, k);
        const dst = nth(b.underlayIps, k);
        if (!espPackets(lines).some((p) => p.src === src && p.dst === dst && p.spi === spi)) {
          missing.push(`${familyName(f)} ${a.name} -> ${b.name}`);
        }
      }
    }
    return missing;
  };
  try {
    await cluster.create();
    await seedCluster(store, cluster, ['plain']);
    for (const n of cluster.nodes) await daemons.start(n);
    const created = await store.kmeshctl(['secret', 'create']);
    c.ok(created.code === 0, `kmeshctl secret create: ${created.stdout.trim()}${created.stderr.trim()}`);
    await store.syncSecret();
    c.ok(await waitSpi(1), 'every node advertises SPI 1 and sends with it to both peers');

    const infos = await store.nodeInfos();
    for (const n of cluster.nodes) {
      const spec = (infos.get(n.name) as { spec?: { addresses?: string[]; podCIDRS?: string[] } } | undefined)?.spec;
      c.ok(
        JSON.stringify(spec?.addresses) === JSON.stringify(n.underlayIps),
        `${n.name} publishes its InternalIPs of every family in KmeshNodeInfo addresses`,
        spec,
      );
    }
    await waitFor(
      'encrypt attachments',
      async () =>
        (await statuses()).every(
          (s) => s?.attachments.some((a) => a.program === 'encrypt' && a.ifname === 'vp0') === true,
        ),
      60_000,
      300,
    );

    // One tunnel per family and pair; no SA or policy template mixes families.
    for (const n of cluster.nodes) {
      const states = endpointPairs(await runOk('ip', ['-n', n.netns, 'xfrm', 'state']));
      const policies = endpointPairs(await runOk('ip', ['-n', n.netns, 'xfrm', 'policy']));
      const mixed = [...states, ...policies].filter(([s, d]) => isV6(s) !== isV6(d));
      c.ok(mixed.length === 0, `${n.name}: no SA or policy template between addresses of different families`, mixed);
      for (const f of families) {
        const k = families.indexOf(f);
        for (const peer of cluster.nodes.filter((p) => p !== n)) {
          const out = states.some(([s, d]) => s === nth(n.underlayIps, k) && d === nth(peer.underlayIps, k));
          const inn = states.some(([s, d]) => s === nth(peer.underlayIps, k) && d === nth(n.underlayIps, k));
          c.ok(out && inn, `${n.name}: ${familyName(f)} SAs both ways with ${peer.name}`);
        }
      }
    }

    // Traffic: ESP with SPI 1 per family and pair; managed pods never in clear; unmanaged pods in clear.
    const managedHosts = cluster.nodes.flatMap((n) => podOf(n, 0).ips);
    const plainHosts = cluster.nodes.flatMap((n) => podOf(n, 1).ips);
    const hostFilter = (hosts: string[]) => hosts.map((h) => `host ${h}`).join(' or ');
    const esp = await capture(cluster.underlayNetns, 'br0', 'esp');
    const clearManaged = await capture(cluster.underlayNetns, 'br0', `not esp and (${hostFilter(managedHosts)})`);
    const clearPlain = await capture(cluster.underlayNetns, 'br0', `(icmp or icmp6) and (${hostFilter(plainHosts)})`);
    const managed = await pingAll(0, 4, 0.2);
    const plain = await pingAll(1, 4, 0.2);
    const espLines = await esp.stop();
    const managedClear = await clearManaged.stop();
    const plainClear = await clearPlain.stop();
    c.ok(
      managed.every((p) => p.transmitted > 0 && p.received === p.transmitted),
      'managed pods reach each other in every family',
      managed,
    );
    const missing1 = espSeen(espLines, 1);
    c.ok(missing1.length === 0, `ESP spi=1 for every family and ordered pair of nodes`, missing1);
    c.ok(managedClear.length === 0, 'no managed pod packet in clear on the underlay', managedClear.slice(0, 3));
    c.ok(
      plain.every((p) => p.received === p.transmitted),
      'unmanaged pods reach each other in every family',
      plain,
    );
    for (const f of families) {
      const seen = plainClear.filter((l) => l.includes(f === 6 ? 'IP6 ' : 'IP '));
      c.ok(seen.length > 0, `${familyName(f)}: pods in the unlabelled namespace travel in clear`, plainClear.length);
    }

    // Rotation under continuous traffic in every family.
    const statBefore = await Promise.all(cluster.nodes.map((n) => xfrmStat(n.netns)));
    const esp2 = await capture(cluster.underlayNetns, 'br0', 'esp');
    const continuous = pingAll(0, 150, 0.1);
    await sleep(1500);
    const rotated = await store.kmeshctl(['secret', 'create']);
    c.ok(rotated.code === 0 && /SPI 1 -> 2/.test(rotated.stdout), `rotation: ${rotated.stdout.trim()}`);
    await store.syncSecret();
    c.ok(await waitSpi(2), 'every node moved to SPI 2');
    const during = [...(await continuous), ...(await pingAll(0, 2, 0.2))];
    const esp2Lines = await esp2.stop();
    const missing2 = espSeen(esp2Lines, 2);
    c.ok(missing2.length === 0, 'ESP spi=2 for every family and ordered pair of nodes after the rotation', missing2);
    const sent = during.reduce((s, p) => s + p.transmitted, 0);
    const lost = during.reduce((s, p) => s + p.transmitted - p.received, 0);
    c.ok(lost === 0, `zero packets lost during rotation in every family (${sent} sent)`, during);
    const statAfter = await Promise.all(cluster.nodes.map((n) => xfrmStat(n.netns)));
    const deltas = cluster.nodes.map((n, i) => xfrmErrorDelta(nth(statBefore, i), nth(statAfter, i)));
    c.ok(
      deltas.every((d) => Object.keys(d).length === 0),
      'zero XFRM error counter deltas during rotation',
      deltas,
    );
  } catch (err) {
    for (const n of cluster.nodes) c.log(`--- ${n.name} daemon log (tail)\n${await daemons.logTail(n)}`);
    throw err;
  } finally {
    await daemons.stopAll();
    await cluster.destroy();
    await runOk('rm', ['-rf', ...cluster.nodes.map((n) => `/sys/fs/bpf/${n.netns}`)]);
  }
}
