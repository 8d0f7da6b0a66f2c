// Three simulated nodes sharing one directory store, each with its own in-memory XFRM kernel and datapath:
// the whole daemon above the kernel adapters (sources, validation, controller, loop, publishing).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import t, { type Test } from 'tap';
import { FakeDatapath } from '../fakes/fake-datapath.js';
import { DatapathAdapter } from '../../src/daemon/datapath-port.js';
import { IpsecAdapter } from '../../src/daemon/ipsec-port.js';
import { ReconcileLoop, type LoopLogger } from '../../src/daemon/loop.js';
import { DaemonMetrics } from '../../src/daemon/metrics.js';
import type { HostNetwork } from '../../src/daemon/pod-interfaces.js';
import { DirSource } from '../../src/daemon/sources/dir-source.js';
import { parseNodeInfo } from '../../src/ipsec/validate-peer.js';
import { nodeKeyStatusJson } from '../../src/model/node-key-status.js';
import type { IpsecKey } from '../../src/model/node.js';
import { FakeXfrmKernel } from '../fakes/fake-xfrm-kernel.js';
import type { XfrmState } from '../../src/xfrm/types.js';

const NAMES = ['node-1', 'node-2', 'node-3'];
const bootOf = (i: number, gen = 0) => `550e8400-e29b-41d4-a716-44665544${String(gen).padStart(2, '0')}0${i}`;

function key(spi: number, fill: number): IpsecKey {
  return { spi, aeadKeyName: 'rfc4106(gcm(aes))', key: Buffer.alloc(36, fill), icvBits: 128 };
}

function writeJson(file: string, obj: unknown): void {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file + '.tmp', JSON.stringify(obj));
  fs.renameSync(file + '.tmp', file);
}

function nodeObject(i: number, gen = 0) {
  return {
    apiVersion: 'v1',
    kind: 'Node',
    metadata: { name: NAMES[i - 1], uid: `uid-${i}` },
    spec: { podCIDRs: [`10.244.${i}.0/24`] },
    status: { addresses: [{ type: 'InternalIP', address: `198.18.0.${i}` }], nodeInfo: { bootID: bootOf(i, gen) } },
  };
}

function podObject(i: number, n: number, ns = 'default') {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name: `pod-${i}-${n}`, namespace: ns },
    spec: { nodeName: NAMES[i - 1] },
    status: { phase: 'Running', podIP: `10.244.${i}.${10 + n}` },
  };
}

function hostNetwork(i: number): HostNetwork {
  return {
    links: [
      { ifindex: 2, name: 'eth0', kind: '', addresses: [`198.18.0.${i}`], mtu: 1500 },
      { ifindex: 10, name: 'veth-1', kind: 'veth', addresses: [] },
      { ifindex: 11, name: 'veth-2', kind: 'veth', addresses: [] },
    ],
    routes: [
      { dst: '198.18.0.0/24', dev: 'eth0', family: 4 },
      { dst: `10.244.${i}.10`, dev: 'veth-1', family: 4 },
      { dst: `10.244.${i}.11`, dev: 'veth-2', family: 4 },
    ],
    neighbours: [],
    fdb: [],
  };
}

const quiet: LoopLogger & { lines: string[] } = {
  lines: [],
  info(_o, m) {
    this.lines.push(m);
  },
  warn(_o, m) {
    this.lines.push(m);
  },
  error(_o, m) {
    this.lines.push(m);
  },
  debug() {
    return undefined;
  },
};

interface SimNode {
  name: string;
  source: DirSource;
  kernel: FakeXfrmKernel;
  dp: FakeDatapath;
  ipsec: IpsecAdapter;
  loop: ReconcileLoop;
  metrics: DaemonMetrics;
}

function cluster(t: Test) {
  // Our own temp dir, removed by our teardown after every loop and source has stopped (a tap testdir could
  // be removed while a last step still writes into it).
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kmesh-loop-'));
  let clock = 1_000_000;
  writeJson(path.join(dir, 'namespaces/default.json'), {
    metadata: { name: 'default', labels: { 'istio.io/dataplane-mode': 'Kmesh' } },
  });
  writeJson(path.join(dir, 'namespaces/plain.json'), { metadata: { name: 'plain' } });
  const nodes: SimNode[] = [1, 2, 3].map((i) => {
    writeJson(path.join(dir, `nodes/${NAMES[i - 1]}.json`), nodeObject(i));
    writeJson(path.join(dir, `pods/default/pod-${i}-0.json`), podObject(i, 0));
    writeJson(path.join(dir, `pods/plain/pod-${i}-1.json`), podObject(i, 1, 'plain'));
    const name = NAMES[i - 1]!;
    const source = new DirSource(dir, name, { pollMs: 60_000 });
    const kernel = new FakeXfrmKernel();
    const dp = new FakeDatapath({
      interfaces: hostNetwork(i).links.map((l) => ({ name: l.name, ifindex: l.ifindex })),
    });
    const ipsec = new IpsecAdapter(kernel, { graceMs: 10_000 });
    const metrics = new DaemonMetrics();
    const loop = new ReconcileLoop({
      nodeName: name,
      source,
      ipsec,
      datapath: new DatapathAdapter(dp, `/sys/fs/bpf/${name}`),
      parseNodeInfo,
      hostNetwork: () => Promise.resolve(hostNetwork(i)),
      xfrmStat: () => Promise.resolve({ XfrmInError: 0 }),
      log: quiet,
      metrics,
      now: () => clock,
      resyncMs: 3_600_000,
    });
    return { name, source, kernel, dp, ipsec, loop, metrics };
  });
  t.teardown(async () => {
    for (const n of nodes) {
      await n.loop.stop();
      await n.source.stop();
    }
    fs.rmSync(dir, { recursive: true, force: true });
  });
  /** Runs rounds of (rescan, step) on every node until nothing changes any more. */
  const settle = async (rounds = 6): Promise<void> => {
    for (let r = 0; r < rounds; r++) {
      for (const n of nodes) {
        await n.source.rescan();
        n.loop.trigger('test');
        await n.loop.idle();
      }
    }
  };
  const start = async (): Promise<void> => {
    for (const n of nodes) {
      await n.source.start(() => n.loop.trigger('change'));
      n.loop.start();
      await n.loop.idle();
    }
  };
  const rotate = (k: IpsecKey): void => {
    for (const n of nodes) n.loop.keyEvent({ kind: 'key', key: k });
  };
  return { dir, nodes, settle, start, rotate, advance: (ms: number) => (clock += ms) };
}

function espStates(n: SimNode): XfrmState[] {
  return n.kernel.listStates().filter((s) => s.proto === 50 && s.reqid !== 0xbeef);
}

t.test('key created -> every pair encrypted with SPI 1; rotation -> SPI 2, old SAs gone after grace', async (t) => {
  const c = cluster(t);
  await c.start();
  await c.settle(2);
  for (const n of c.nodes) {
    const s = n.loop.currentStatus();
    t.equal(s.advertisedSpi, undefined, `${n.name}: nothing advertised without a key`);
    t.same(espStates(n), [], `${n.name}: no SAs without a key`);
    t.same(n.dp.remoteCidrs, [], `${n.name}: no remote CIDRs without a key`);
  }
  t.same(fs.readdirSync(path.join(c.dir, 'kmeshnodeinfos')), [], 'no KmeshNodeInfo before a key exists');

  c.rotate(key(1, 0x11));
  await c.settle();
  for (const n of c.nodes) {
    const s = n.loop.currentStatus();
    t.equal(s.advertisedSpi, 1, `${n.name} advertises SPI 1`);
    t.same(
      s.peers.map((p) => [p.name, p.outboundSpi, p.inboundSpis]),
      NAMES.filter((x) => x !== n.name).map((x) => [x, 1, [1]]),
      `${n.name} sends and receives with SPI 1 to both peers`,
    );
    t.same(s.mssClamp, { mtu: 1500, mtuSource: 'underlay', ipv4: 1406, ipv6: 1366 }, `${n.name}: MSS clamp in status`);
    t.same(await n.dp.mssClamp(), { ipv4: 1406, ipv6: 1366 }, `${n.name}: MSS clamp in km_ipsec_config`);
    t.match(await n.metrics.text(), /kmesh_ipsec_mss_clamp_bytes\{family="ipv6"\} 1366/, `${n.name}: as a metric`);
    // 2 peers x (1 inbound + 1 outbound) SAs.
    t.equal(espStates(n).length, 4, `${n.name} holds 4 SAs`);
    t.ok(espStates(n).every((x) => x.spi === 1));
    t.same(
      [...n.dp.remoteCidrs].sort(),
      c.nodes.filter((x) => x !== n).map((x) => `10.244.${x.name.slice(-1)}.0/24`),
    );
    t.same(
      n.loop.currentStatus().attachments,
      [
        { ifname: 'eth0', program: 'decrypt' },
        { ifname: 'veth-1', program: 'encrypt' },
      ],
      `${n.name}: decrypt on the underlay, encrypt only on the managed pod's veth (pod in "plain" is left alone)`,
    );
    t.equal(n.dp.peers.size, 2, 'peer ids for both peers');
    t.match(
      n.loop.currentStatus().cidrIndex,
      { nodes: Number, nodeCapacity: 3072, records: Number, recordCapacity: 16384 },
      `${n.name}: the programs walk the compiled CIDR index`,
    );
    const metricsText = await n.metrics.text();
    t.match(metricsText, /^kmesh_ipsec_cidr_index_installed 1$/m, 'metric: index installed');
    t.match(metricsText, /^kmesh_ipsec_cidr_index_entries\{kind="nodes"\} [1-9]/m, 'metric: nodes in use');
    const published = JSON.parse(fs.readFileSync(path.join(c.dir, 'kmeshnodeinfos', `${n.name}.json`), 'utf8'));
    t.equal(published.spec.spi, 1);
    t.same(published.metadata.ownerReferences, [
      { apiVersion: 'v1', kind: 'Node', name: n.name, uid: `uid-${n.name.slice(-1)}` },
    ]);
  }

  // Plaintext from a peer's pod CIDR (as tc_mark_decrypt counts it): named in /status, exported as a metric.
  const [n1] = c.nodes as [SimNode];
  t.equal(n1.loop.currentStatus().strictMode, 'off', 'strict mode off by default');
  t.same(n1.loop.currentStatus().plaintext, [], 'no plaintext seen');
  const peer2 = n1.loop.currentStatus().peers.find((p) => p.name === 'node-2')!;
  n1.dp.addPlaintext({ peer: peer2.peerId, mode: 'off', packets: 3 });
  n1.dp.addPlaintext({ peer: 999, mode: 'off', packets: 1 });
  await c.settle(1);
  t.same(n1.loop.currentStatus().plaintext, [
    { peer: 'node-2', peerId: peer2.peerId, action: 'off', packets: 3 },
    { peer: '', peerId: 999, action: 'off', packets: 1 },
  ]);
  n1.dp.addPlaintext({ peer: peer2.peerId, mode: 'off', packets: 2 });
  await c.settle(1);
  const plainMetrics = await n1.metrics.text();
  t.match(plainMetrics, /^kmesh_ipsec_plaintext_packets_total\{peer="node-2",action="off"\} 5$/m, 'metric per peer');
  t.match(plainMetrics, /^kmesh_ipsec_plaintext_packets_total\{peer="id-999",action="off"\} 1$/m, 'unknown id');

  c.rotate(key(2, 0x22));
  await c.settle();
  for (const n of c.nodes) {
    const s = n.loop.currentStatus();
    t.equal(s.advertisedSpi, 2, `${n.name} advertises SPI 2`);
    t.ok(
      s.peers.every((p) => p.outboundSpi === 2),
      `${n.name} sends with SPI 2 to every peer`,
    );
    t.ok(s.rotation?.convergedAt !== undefined, 'rotation convergence recorded');
    t.ok(
      espStates(n).some((x) => x.spi === 1),
      'old SAs stay during the grace period',
    );
  }
  c.advance(11_000);
  await c.settle();
  c.advance(11_000);
  await c.settle();
  for (const n of c.nodes) {
    t.ok(
      espStates(n).every((x) => x.spi === 2),
      `${n.name}: SPI 1 SAs removed after the grace period`,
    );
    t.equal(espStates(n).length, 4);
    t.same(n.ipsec.keySpis(), [2], 'retired key dropped from the history');
  }
});

t.test(
  'peer reboot rekeys, bad peer objects are skipped, removed nodes are cleaned up, foreign state untouched',
  async (t) => {
    const c = cluster(t);
    const [n1, n2, n3] = c.nodes as [SimNode, SimNode, SimNode];
    const foreign: XfrmState = {
      family: 4,
      src: '192.0.2.1',
      dst: '192.0.2.2',
      spi: 0x1234,
      proto: 50,
      mode: 'tunnel',
      reqid: 0xbeef,
      aead: { name: 'rfc4106(gcm(aes))', key: Buffer.alloc(36, 9), icvBits: 128 },
      esn: false,
      replayWindow: 0,
    };
    n1.kernel.seedState(foreign);
    await c.start();
    c.rotate(key(1, 0x11));
    await c.settle();
    const inboundFrom2 = () =>
      espStates(n1).filter((s) => s.src === '198.18.0.2' && s.dst === '198.18.0.1')[0]?.aead?.key;
    const before = inboundFrom2();
    t.ok(before);

    // node-2 reboots: new boot ID on its Node object -> it republishes -> node-1 re-derives the keys.
    writeJson(path.join(c.dir, 'nodes/node-2.json'), nodeObject(2, 1));
    await c.settle();
    const after = inboundFrom2();
    t.ok(after && before && !after.equals(before), 'node-1 replaced its inbound SA from node-2 with the new key');
    t.ok(n2.loop.currentStatus().peers.every((p) => p.outboundSpi === 1));

    // A broken KmeshNodeInfo is reported and skipped; good peers keep working.
    writeJson(path.join(c.dir, 'kmeshnodeinfos/node-9.json'), {
      metadata: { name: 'node-9' },
      spec: { spi: 1, addresses: ['not-an-ip'], bootID: bootOf(9), podCIDRS: ['10.244.9.0/24'] },
    });
    await c.settle(2);
    t.match(n1.loop.currentStatus().invalidPeers, [/node-9.*not-an-ip.*is not an IP address/]);
    t.equal(n1.loop.currentStatus().peers.length, 2);

    // node-3 goes away (its daemon and objects removed): the others drop its SAs and policies.
    await n3.loop.stop();
    await n3.source.stop();
    fs.rmSync(path.join(c.dir, 'kmeshnodeinfos/node-3.json'));
    fs.rmSync(path.join(c.dir, 'nodes/node-3.json'));
    for (const n of [n1, n2]) {
      await n.source.rescan();
      n.loop.trigger('node removed');
      await n.loop.idle();
      t.notOk(
        espStates(n).some((s) => s.src === '198.18.0.3' || s.dst === '198.18.0.3'),
        `${n.name}: no SA with node-3`,
      );
      t.notOk(
        n.kernel.listPolicies().some((p) => p.templates.some((x) => x.src === '198.18.0.3' || x.dst === '198.18.0.3')),
        `${n.name}: no policy with node-3`,
      );
      t.notOk(n.dp.remoteCidrs.includes('10.244.3.0/24'));
    }
    t.same(
      n1.kernel.listStates().filter((s) => s.reqid === 0xbeef),
      [foreign],
      'the foreign state is still there, unchanged',
    );
  },
);

t.test('pods: labelling the namespace attaches, unlabelling detaches; a refused key is reported', async (t) => {
  const c = cluster(t);
  const n1 = c.nodes[0]!;
  await c.start();
  c.rotate(key(1, 0x11));
  await c.settle(3);
  t.same(n1.loop.currentStatus().managedPods, ['default/pod-1-0']);
  writeJson(path.join(c.dir, 'namespaces/plain.json'), {
    metadata: { name: 'plain', labels: { 'istio.io/dataplane-mode': 'Kmesh' } },
  });
  await c.settle(1);
  t.same(n1.loop.currentStatus().managedPods, ['default/pod-1-0', 'plain/pod-1-1']);
  t.same(
    n1.loop
      .currentStatus()
      .attachments.filter((a) => a.program === 'encrypt')
      .map((a) => a.ifname),
    ['veth-1', 'veth-2'],
  );
  writeJson(path.join(c.dir, 'namespaces/default.json'), { metadata: { name: 'default' } });
  await c.settle(1);
  t.same(
    n1.loop
      .currentStatus()
      .attachments.filter((a) => a.program === 'encrypt')
      .map((a) => a.ifname),
    ['veth-2'],
    'detached from the pod that is no longer managed',
  );

  quiet.lines.length = 0;
  n1.loop.keyEvent({ kind: 'key', key: key(1, 0x99) });
  await n1.loop.idle();
  t.ok(quiet.lines.some((l) => /secret refused: IPsec key SPI 1 is already in use with a different key/.test(l)));
  t.same(n1.ipsec.keySpis(), [1]);
  t.notOk(
    quiet.lines.some((l) => l.includes('99999999')),
    'no key bytes in the log',
  );
});

t.test('KmeshNodeInfo status: what each node holds and sends with; old SPI gone on acknowledgement', async (t) => {
  const c = cluster(t);
  await c.start();
  c.rotate(key(1, 0x11));
  await c.settle();
  // A node sending with its newest SPI, and one no longer holding an old SPI, write that as a report: at most once
  // per reporting interval (2 peers: 20 ms; status-write-timing.ts). The test's clock moves only when told.
  const reportsDue = async (): Promise<void> => {
    c.advance(100);
    await c.settle(1);
  };
  await reportsDue();
  const statusOf = (name: string) =>
    (
      JSON.parse(fs.readFileSync(path.join(c.dir, 'kmeshnodeinfos', `${name}.json`), 'utf8')) as {
        status: Record<string, unknown> & { lastRotation: { spi: number; convergedAt?: string } };
      }
    ).status;
  for (const n of c.nodes) {
    t.match(
      statusOf(n.name),
      { heldSpis: [1], highestSpi: 1, sendSpis: [1], peerCount: 2, failingPeerCount: 0 },
      `${n.name} reports SPI 1 held and sent with`,
    );
    t.equal(statusOf(n.name).lastRotation.spi, 1);
    t.ok(statusOf(n.name).lastRotation.convergedAt, 'and when the rotation converged');
    t.notOk('keyProblem' in statusOf(n.name), 'no key problem (empty fields are left out)');
    t.same(nodeKeyStatusJson(n.loop.currentStatus().keyReport!), statusOf(n.name), '/status carries the same facts');
  }
  c.rotate(key(2, 0x22));
  await c.settle();
  for (const n of c.nodes) {
    t.match(statusOf(n.name), { heldSpis: [1, 2], highestSpi: 2, sendSpis: [2] }, `${n.name} switched, holds both`);
    const s = n.loop.currentStatus();
    t.same(
      Object.keys(s.peerReports).sort(),
      NAMES.filter((x) => x !== n.name),
      'peers reports read',
    );
    t.same(
      s.pendingRetirements.map((p) => [p.spi, p.waitingFor]),
      [[1, 'acknowledgement floor']],
    );
  }
  c.advance(6_000); // past the 5 s floor, well within the 10 s grace
  await c.settle();
  await reportsDue();
  for (const n of c.nodes) {
    t.ok(
      espStates(n).every((x) => x.spi === 2),
      `${n.name}: SPI 1 removed once every peer acknowledged, before the grace period`,
    );
    t.match(statusOf(n.name), { heldSpis: [2], sendSpis: [2] });
  }
  const metrics = await c.nodes[0]!.metrics.text();
  t.match(metrics, /kmesh_ipsec_highest_spi 2/);
  t.match(metrics, /kmesh_ipsec_peer_reported_sending_spi\{peer="node-2",spi="2"\} 1/);
});

t.test('a refused key is visible: keyProblem, keySpi stays the key in force, a metric, an error log', async (t) => {
  const c = cluster(t);
  await c.start();
  c.rotate(key(1, 0x11));
  await c.settle();
  c.rotate(key(2, 0x22));
  await c.settle();
  const n1 = c.nodes[0]!;
  quiet.lines.length = 0;
  // create, create, delete, create: the Secret comes back with SPI 2 and another key.
  n1.loop.keyEvent({ kind: 'key', key: key(2, 0x33) });
  await c.settle(1);
  let s = n1.loop.currentStatus();
  t.match(s.keyProblem, /^secret key refused \(SPI 2\): IPsec key SPI 2 is already in use with a different key/);
  t.equal(s.keyRefusals, 1);
  t.ok(
    quiet.lines.some((l) => l.startsWith('secret refused: ')),
    'error logged',
  );
  t.match(await n1.metrics.text(), /kmesh_ipsec_key_refusals_total 1\n[^]*kmesh_ipsec_key_refused 1/);
  t.match(s.keyReport, { keyProblem: /^secret key refused/, highestSpi: 2 }, 'and in the KmeshNodeInfo status');

  // A rollback to an SPI no longer held is refused too; the held key for an older SPI is only noted.
  c.advance(20_000);
  await c.settle();
  n1.loop.keyEvent({ kind: 'key', key: key(1, 0x11) });
  await c.settle(1);
  s = n1.loop.currentStatus();
  t.match(s.keyProblem, /SPI 1 is older than SPI 2 in force and not held any more: a key rollback is refused/);
  t.same(n1.ipsec.keySpis(), [2], 'the old key was not loaded');
  t.ok(
    s.peers.every((p) => p.outboundSpi === 2),
    'still sending with SPI 2',
  );
  n1.loop.keyEvent({ kind: 'key', key: key(3, 0x44) });
  await c.settle(1);
  t.equal(n1.loop.currentStatus().keyProblem, '', 'a good key clears the problem');
  t.match(await n1.metrics.text(), /kmesh_ipsec_key_refused 0/);
});

t.test(
  'the kernel is dumped once, then only when another tool changed it: /status kernelRead and a metric',
  async (t) => {
    const c = cluster(t);
    await c.start();
    c.rotate(key(1, 0x11));
    await c.settle();
    const n1 = c.nodes[0]!;
    let s = n1.loop.currentStatus();
    t.match(s.kernelRead, { how: 'same-plan', why: '' }, 'a settled cluster: nothing to diff');
    const dumps = s.kernelRead?.dumps ?? -1;
    t.ok(dumps >= 1 && dumps <= 3, `dumped ${dumps} times over ${s.steps} steps`);
    const before = n1.kernel.dumpCalls;
    await c.settle(3);
    t.equal(n1.kernel.dumpCalls, before, 'more steps, no dump');
    n1.kernel.seedPolicy({
      dir: 'out',
      selector: { family: 4, src: '0.0.0.0/0', dst: '192.0.2.0/24', proto: 0 },
      priority: 9,
      action: 'allow',
      templates: [],
    });
    n1.loop.trigger('test');
    await n1.loop.idle();
    s = n1.loop.currentStatus();
    t.match(s.kernelRead, { how: 'dump', why: /changed by someone else/, dumps: dumps + 1 });
    t.match(await n1.metrics.text(), new RegExp(`kmesh_ipsec_xfrm_dumps ${dumps + 1}\\n`));
    n1.loop.trigger('test');
    await n1.loop.idle();
    t.match(n1.loop.currentStatus().kernelRead, { how: 'same-plan', dumps: dumps + 1 }, 'and back to the view');
  },
);
