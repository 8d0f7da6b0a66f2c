// Host test of the topology helpers (no ESP needed): builds 3 nodes x 2 pods, checks pod-to-pod traffic
// across nodes and within a node, a lossless counted UDP flow, a capture on the underlay, and that
// destroy() leaves no namespace behind. Needs root (network namespaces).
import t from 'tap';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
  captureContains,
  captureLines,
  createTopology,
  execOk,
  ping,
  planNamespaces,
  readXfrmStat,
  startCapture,
  startUdpFlow,
} from '../lib/topology.js';

const root = process.getuid?.() === 0;

t.test(
  'three nodes with two pods each route pod traffic over the underlay',
  { skip: root ? false : 'needs root for network namespaces' },
  async (t) => {
    const topo = await createTopology({ prefix: 'kmt-vmtopo-', nodes: 3, podsPerNode: 2 });
    const dir = mkdtempSync(path.join(os.tmpdir(), 'kmt-vmtopo-'));
    t.teardown(async () => {
      await topo.destroy();
      rmSync(dir, { recursive: true, force: true });
    });
    const [n0, n1, n2] = topo.plan.nodes;
    const a = n0!.pods[0]!;
    const b = n1!.pods[1]!;
    const c = n2!.pods[0]!;
    t.equal(n1!.underlayIp, '198.18.0.2');
    t.equal(b.ip, '10.244.1.3');

    const capture = await startCapture({
      netns: n0!.netns,
      iface: 'eth0',
      file: path.join(dir, 'ul.pcap'),
      filter: 'udp',
      immediate: true,
    });
    const cross = await ping(a.netns, b.ip, { count: 2 });
    t.equal(cross.received, 2, 'pod on node 0 reaches a pod on node 1');
    t.equal((await ping(c.netns, a.ip, { count: 2 })).received, 2, 'pod on node 2 reaches a pod on node 0');
    t.equal((await ping(a.netns, n0!.pods[1]!.ip, { count: 1 })).received, 1, 'pods on one node reach each other');

    const flow = await startUdpFlow({
      from: { netns: a.netns, ip: a.ip },
      to: { netns: b.netns, ip: b.ip },
      port: 7000,
      payload: 'kmt-topology-probe',
      count: 50,
      intervalMs: 2,
    });
    await flow.waitSent();
    const result = await flow.stop(500);
    await capture.stop();
    t.ok(result.sent > 0, `sender sent ${result.sent} datagrams`);
    t.equal(result.lost, 0, 'no datagram lost');
    t.equal(result.tally.badPayload, 0);
    t.ok(
      captureContains(capture.file, 'kmt-topology-probe'),
      'plaintext flow is visible on the underlay without IPsec',
    );
    t.match((await captureLines(capture.file))[0] ?? '', /IP 10\.244\.0\.2\.\d+ > 10\.244\.1\.3\.7000:/);

    const stat = await readXfrmStat(n0!.netns);
    t.type(stat.XfrmInError, 'number', 'xfrm_stat readable per namespace');
    t.ok((await execOk(n0!.netns, ['ip', 'route'])).includes('10.244.2.0/24 via 198.18.0.3'));
  },
);

t.test(
  'destroy removes every namespace, also after a failed build',
  { skip: root ? false : 'needs root for network namespaces' },
  async (t) => {
    const topo = await createTopology({ prefix: 'kmt-vmtopo2-', nodes: 2, podsPerNode: 1 });
    await topo.destroy();
    const list = await execOk(undefined, ['ip', 'netns', 'list']);
    for (const ns of planNamespaces(topo.plan)) t.notOk(list.includes(ns), `${ns} removed`);
    await t.rejects(createTopology({ prefix: 'Bad Prefix', nodes: 1, podsPerNode: 1 }), /prefix 'Bad Prefix'/);
  },
);
