// The loop validates each KmeshNodeInfo object once: while a source hands out the same object, later steps reuse
// what parseNodeInfo and parseNodeKeyStatus gave for it; a replaced object is validated again, and when its spec
// says what the last one's did (only its status changed), the NodeInfo of the last one is handed on.
import t from 'tap';
import { DatapathAdapter } from '../../src/daemon/datapath-port.js';
import { IpsecAdapter } from '../../src/daemon/ipsec-port.js';
import { ReconcileLoop, type LoopDeps, type LoopLogger } from '../../src/daemon/loop.js';
import type { ClusterSource, ClusterView } from '../../src/daemon/sources/source.js';
import { parseNodeInfo } from '../../src/ipsec/validate-peer.js';
import type { NodeInfo } from '../../src/model/node.js';
import { FakeDatapath } from '../fakes/fake-datapath.js';
import { FakeXfrmKernel } from '../fakes/fake-xfrm-kernel.js';

const boot = (i: number) => `550e8400-e29b-41d4-a716-4466554400${String(i).padStart(2, '0')}`;
const peer = (i: number, spi = 1, status?: object) => ({
  apiVersion: 'kmesh.net/v1alpha1',
  kind: 'KmeshNodeInfo',
  metadata: { name: `node-${i}`, namespace: 'kmesh-system' },
  spec: { spi, addresses: [`198.18.0.${i}`], bootID: boot(i), podCIDRS: [`10.244.${i}.0/24`] },
  ...(status === undefined ? {} : { status }),
});

/** A source whose view the test sets; it publishes nothing (the loop's own object is not the subject). */
class ViewSource implements ClusterSource {
  readonly description = 'test view';
  current: ClusterView = {
    node: { name: 'node-1', uid: 'u1', addresses: ['198.18.0.1'], bootID: boot(1), podCIDRs: ['10.244.1.0/24'] },
    nodeInfos: [],
    pods: [],
    namespaces: [],
    problems: [],
    synced: true,
  };
  start(): Promise<void> {
    return Promise.resolve();
  }
  view(): ClusterView {
    return this.current;
  }
  publishNodeInfo(): Promise<void> {
    return Promise.resolve();
  }
  publishNodeStatus(): Promise<void> {
    return Promise.resolve();
  }
  deleteNodeInfo(): Promise<boolean> {
    return Promise.resolve(false);
  }
  stop(): Promise<void> {
    return Promise.resolve();
  }
}

const quiet: LoopLogger = {
  info: () => undefined,
  warn: () => undefined,
  error: () => undefined,
  debug: () => undefined,
};

/** A loop of node-1 over `source` with fake kernels, started, with SPI 1's key given; `deps` override the rest. */
function startedLoop(source: ViewSource, deps: Partial<LoopDeps>): ReconcileLoop {
  const loop = new ReconcileLoop({
    nodeName: 'node-1',
    source,
    ipsec: new IpsecAdapter(new FakeXfrmKernel(), { graceMs: 10_000 }),
    datapath: new DatapathAdapter(new FakeDatapath({ interfaces: [{ name: 'eth0', ifindex: 2 }] }), '/sys/fs/bpf/x'),
    parseNodeInfo,
    hostNetwork: () =>
      Promise.resolve({
        links: [{ ifindex: 2, name: 'eth0', kind: '', addresses: ['198.18.0.1'] }],
        routes: [{ dst: '198.18.0.0/24', dev: 'eth0', family: 4 }],
        neighbours: [],
        fdb: [],
      }),
    xfrmStat: () => Promise.resolve({}),
    log: quiet,
    resyncMs: 3_600_000,
    ...deps,
  });
  loop.start();
  loop.keyEvent({
    kind: 'key',
    key: { spi: 1, aeadKeyName: 'rfc4106(gcm(aes))', key: Buffer.alloc(36, 1), icvBits: 128 },
  });
  return loop;
}

t.test('parseNodeInfo runs once per object, again for a replaced one', async (t) => {
  const source = new ViewSource();
  const objects = [peer(2), peer(3), { metadata: { name: 'node-4' }, spec: { spi: 'x' } }];
  source.current = { ...source.current, nodeInfos: objects.map((object, i) => ({ name: `node-${i + 2}`, object })) };
  const parsed: unknown[] = [];
  const statuses: string[] = [];
  let reports: string[] = [];
  const loop = startedLoop(source, {
    parseNodeInfo: (obj) => {
      parsed.push(obj);
      return parseNodeInfo(obj);
    },
    onStatus: (s) => {
      statuses.push(`${s.peers.length} peers; ${s.invalidPeers.join(', ')}`);
      reports = Object.keys(s.peerReports);
    },
  });
  t.teardown(() => loop.stop());
  await loop.idle();
  const steps = statuses.length;
  t.ok(steps >= 1);
  t.equal(parsed.length, 3, 'the first step validates every object');
  t.match(statuses.at(-1), /^2 peers; .*node-4/, 'the invalid one is reported');

  loop.trigger('resync');
  await loop.idle();
  t.equal(statuses.length, steps + 1);
  t.equal(parsed.length, 3, 'same objects: not validated again');
  t.equal(statuses.at(-1), statuses.at(-2), 'and the same result');

  const replaced = peer(3, 1, { highestSpi: 1, heldSpis: [1], sendSpis: [1] });
  source.current = {
    ...source.current,
    nodeInfos: [source.current.nodeInfos[0]!, { name: 'node-3', object: replaced }, source.current.nodeInfos[2]!],
  };
  loop.trigger('change');
  await loop.idle();
  t.same(parsed.slice(3), [replaced], 'only the replaced object is validated');
  t.same(reports, ['node-3'], "and its status read: the peer's report is there");
});

t.test('the per-step summary is built and logged only when debug is on', async (t) => {
  for (const debugOn of [false, true]) {
    const source = new ViewSource();
    source.current = { ...source.current, nodeInfos: [{ name: 'node-2', object: peer(2) }] };
    const summaries: object[] = [];
    const loop = startedLoop(source, {
      log: {
        ...quiet,
        isLevelEnabled: (level) => level !== 'debug' || debugOn,
        debug: (obj, msg) => {
          if (msg === 'reconcile step') summaries.push(obj);
        },
      },
    });
    t.teardown(() => loop.stop());
    await loop.idle();
    if (debugOn) t.match(summaries.at(-1), { peers: ['node-2:1'] }, 'debug on: each step summarised, its peers named');
    else t.equal(summaries.length, 0, 'debug off: no summary');
  }
});

t.test('a replaced object whose spec says the same hands on the NodeInfo of the last one', async (t) => {
  const source = new ViewSource();
  const entry = (i: number, spi = 1, status?: object) => ({ name: `node-${i}`, object: peer(i, spi, status) });
  source.current = { ...source.current, nodeInfos: [entry(2), entry(3)] };
  const ipsec = new IpsecAdapter(new FakeXfrmKernel(), { graceMs: 10_000 });
  const stepped: NodeInfo[][] = [];
  const step = ipsec.step.bind(ipsec);
  ipsec.step = (input) => {
    stepped.push([...input.peers]);
    return step(input);
  };
  const loop = startedLoop(source, { ipsec });
  t.teardown(() => loop.stop());
  const stepWith = async (nodeInfos: ClusterView['nodeInfos']): Promise<NodeInfo[]> => {
    source.current = { ...source.current, nodeInfos };
    loop.trigger('change');
    await loop.idle();
    return stepped.at(-1) as NodeInfo[];
  };
  await loop.idle();
  const first = stepped.at(-1) as NodeInfo[];
  t.equal(first.length, 2);

  // A status written (an acknowledgement): a new object, the same spec.
  const acked = await stepWith([entry(2), entry(3, 1, { highestSpi: 1, heldSpis: [1], sendSpis: [1] })]);
  t.equal(acked[0], first[0], 'node-2: its NodeInfo handed on');
  t.equal(acked[1], first[1], 'node-3, whose status changed: its NodeInfo handed on');

  const moved = await stepWith([entry(2), entry(3, 2)]);
  t.not(moved[1], first[1], 'a changed spec: a new NodeInfo');
  t.equal(moved[1]?.spi, 2);

  // Gone for a step and back with the spec it had before it left: validated anew (the entry went with the peer).
  t.equal((await stepWith([entry(2)])).length, 1);
  const back = await stepWith([entry(2), entry(3, 2)]);
  t.not(back[1], moved[1], 'a peer that left and came back: its NodeInfo made anew');
  t.same(back[1], moved[1], 'saying the same');
});
