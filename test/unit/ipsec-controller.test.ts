import t from 'tap';
import type { Test } from 'tap';
import { KMESH_REQID } from '../../src/ipsec/ownership.js';
import { IpsecController } from '../../src/ipsec/node-controller.js';
import { removeOwned } from '../../src/ipsec/reconciler.js';
import { DEFAULT_RESYNC_SECONDS, DEFAULT_ROTATION_GRACE_SECONDS } from '../../src/daemon/config.js';
import { DEFAULT_ROTATION_GRACE_MS } from '../../src/ipsec/rotation.js';
import { KeyHistory } from '../../src/keys/key-history.js';
import { FakeXfrmKernel } from '../fakes/fake-xfrm-kernel.js';
import type { XfrmPolicy, XfrmState } from '../../src/xfrm/types.js';
import { makeKey, makeNode, SimCluster } from '../fakes/ipsec-fixtures.js';

async function converged(n: number, graceMs = 1000): Promise<SimCluster> {
  const c = new SimCluster({ graceMs });
  for (let i = 1; i <= n; i++) c.add(makeNode(i));
  await c.stepAll(); // everyone publishes SPI 1 (no peers visible yet for the first ones)
  await c.stepAll(); // everyone sees everyone
  return c;
}

/** Steps nodes in the given order, asserting after every single step that no published pair is broken. */
async function stepChecked(t: Test, c: SimCluster, order: string[]): Promise<void> {
  for (const name of order) {
    await c.step(name);
    const problems = c.problems();
    if (problems.length > 0) {
      t.fail(`after ${name} stepped at t=${c.now}: ${problems.join('; ')}`);
      return;
    }
  }
}

function names(c: SimCluster): string[] {
  return [...c.nodes.keys()].sort();
}

t.test('3 nodes converge, every pair encrypted, then a no-change step writes nothing', async (t) => {
  const c = await converged(3);
  t.same(c.problems(), []);
  for (const name of names(c)) {
    const r = c.get(name).last!;
    t.equal(r.advertiseSpi, 1);
    t.ok(r.converged, `${name} converged`);
    t.same(
      r.peers.map((p) => [p.name, p.ok, p.sendSpi]),
      names(c)
        .filter((n) => n !== name)
        .map((n) => [n, true, 1]),
    );
  }
  const reports = await c.stepAll();
  t.same(
    reports.map((r) => r.writes),
    [0, 0, 0],
    'zero writes',
  );
  for (const name of names(c)) t.equal(c.get(name).kernel.applyCalls > 0, true);
});

t.test('10 nodes: all 90 directed paths work with distinct per-peer inbound SAs', async (t) => {
  const c = await converged(10);
  t.same(c.problems(), []);
  const node1 = c.get('node-01');
  const inboundMarks = node1.kernel
    .listStates()
    .filter((s) => s.dst === '198.18.0.1')
    .map((s) => s.mark!.value);
  t.equal(inboundMarks.length, 9);
  t.equal(new Set(inboundMarks).size, 9, 'one inbound SA per peer, each with its own mark');
  t.equal(node1.kernel.listPolicies().length, 9 * 3 + 1);
});

t.test(
  'rotation in order: new SPI advertised only after inbound SAs exist, no broken path at any step, old SPI retired after grace',
  async (t) => {
    const c = await converged(3, 1000);
    for (const n of names(c)) c.giveKey(n, 2);
    c.now = 10;
    await stepChecked(t, c, names(c));
    // Everyone now holds and advertises 2 and installed SAs for both SPIs.
    for (const n of names(c)) {
      t.equal(c.get(n).published?.spi, 2, `${n} advertises 2`);
      t.same(c.spisInKernel(n), [1, 2]);
    }
    await stepChecked(t, c, names(c));
    for (const n of names(c))
      t.same(
        c.get(n).last!.peers.map((p) => p.sendSpi),
        [2, 2],
        `${n} sends with 2`,
      );
    t.same(
      c.get('node-01').last!.pendingRetirements.map((p) => p.spi),
      [1],
      'SPI 1 waits for the grace period',
    );
    c.now = 500;
    await stepChecked(t, c, names(c));
    t.same(c.spisInKernel('node-01'), [1, 2], 'not retired before grace');
    c.now = 2000;
    await stepChecked(t, c, names(c));
    for (const n of names(c)) {
      t.same(c.spisInKernel(n), [2], `${n}: no SPI 1 SA left`);
      t.same(c.get(n).controller.keys.spis(), [2], `${n}: SPI 1 retired from the key history`);
      t.same(KeyHistory.fromJSON(c.get(n).persisted).spis(), [2], `${n}: and from what the daemon persists`);
      t.same(c.get(n).last!.retiredSpis, [1]);
    }
    const again = await c.stepAll();
    t.same(
      again.map((r) => r.writes),
      [0, 0, 0],
    );
  },
);

function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s * 1664525 + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

t.test('rotation out of order: keys arrive and nodes step in random orders, no broken path, converges', async (t) => {
  // The protocol's one timing assumption: every node steps (sees its peers' new KmeshNodeInfo) within the
  // grace period. Each round here is a random permutation of all nodes, 37 ms apart; grace is 400 ms.
  for (const seed of [1, 2, 3, 4, 5]) {
    const random = rng(seed);
    const c = await converged(4, 400);
    const pendingKey = new Set(names(c));
    for (let round = 0; round < 30; round++) {
      c.now += 37;
      const order = names(c)
        .map((n) => ({ n, r: random() }))
        .sort((a, b) => a.r - b.r)
        .map((x) => x.n);
      for (const name of order) {
        if (pendingKey.has(name) && random() < 0.15) {
          c.giveKey(name, 2);
          pendingKey.delete(name);
        }
        await stepChecked(t, c, [name]);
      }
    }
    for (const n of pendingKey) c.giveKey(n, 2);
    for (let i = 0; i < 4; i++) {
      c.now += 300;
      await stepChecked(t, c, names(c));
    }
    for (const n of names(c)) t.same(c.spisInKernel(n), [2], `seed ${seed}: ${n} ends on SPI 2 only`);
  }
});

t.test(
  'peer lagging: a peer without the new key keeps being sent the old SPI; the old SPI is not retired',
  async (t) => {
    const c = await converged(3, 100);
    c.giveKey('node-01', 2);
    c.giveKey('node-02', 2);
    for (let i = 0; i < 4; i++) {
      c.now += 1000;
      await stepChecked(t, c, names(c));
    }
    const a = c.get('node-01').last!;
    t.equal(a.advertiseSpi, 2);
    t.same(
      a.peers.map((p) => [p.name, p.sendSpi]),
      [
        ['node-02', 2],
        ['node-03', 1],
      ],
    );
    t.match(a.peers[1]!.reasons, [], 'lagging peer advertises an SPI we hold: no note');
    const lagging = c.get('node-03').last!;
    t.equal(lagging.advertiseSpi, 1);
    t.same(
      lagging.peers.map((p) => p.sendSpi),
      [1, 1],
      'the lagging node sends with the newest it holds',
    );
    t.match(lagging.peers[0]!.reasons, [/advertises SPI 2, which we do not hold yet/]);
    t.same(c.spisInKernel('node-01'), [1, 2], 'SPI 1 kept while a peer still advertises it');
    c.giveKey('node-03', 2);
    for (let i = 0; i < 3; i++) {
      c.now += 1000;
      await stepChecked(t, c, names(c));
    }
    for (const n of names(c)) t.same(c.spisInKernel(n), [2]);
  },
);

t.test('two rotations back to back (1 -> 2 -> 3) before anything is retired', async (t) => {
  const c = await converged(3, 500);
  for (const n of names(c)) c.giveKey(n, 2);
  c.now += 10;
  await stepChecked(t, c, ['node-02']);
  for (const n of names(c)) c.giveKey(n, 3);
  for (let i = 0; i < 3; i++) {
    c.now += 100;
    await stepChecked(t, c, names(c).reverse());
  }
  t.same(c.spisInKernel('node-01'), [1, 2, 3]);
  for (const n of names(c)) t.equal(c.get(n).published?.spi, 3);
  c.now += 1000;
  await stepChecked(t, c, names(c));
  for (const n of names(c)) t.same(c.spisInKernel(n), [3]);
});

t.test('restart mid-rotation adopts the kernel state with zero writes and finishes the rotation', async (t) => {
  const c = await converged(3, 1000);
  for (const n of names(c)) c.giveKey(n, 2);
  c.now = 10;
  await stepChecked(t, c, names(c));
  await stepChecked(t, c, names(c));
  c.now = 600;
  const before = c.get('node-02').kernel.writes;
  c.restart('node-02');
  const r = await c.step('node-02');
  t.equal(r.writes, 0, 'adoption: nothing rewritten');
  t.equal(c.get('node-02').kernel.writes, before);
  t.same(
    [...c.get('node-02').controller.peerIdAllocation],
    [
      ['node-01', 1],
      ['node-03', 2],
    ],
  );
  t.same(c.problems(), []);
  c.now = 1500;
  await stepChecked(t, c, names(c));
  t.same(c.spisInKernel('node-01'), [2], 'others retire on time');
  t.same(c.spisInKernel('node-02'), [1, 2], 'the restarted node restarted its grace clock (late, never early)');
  c.now = 2600;
  await stepChecked(t, c, names(c));
  t.same(c.spisInKernel('node-02'), [2]);
});

t.test('restart without a published SPI passed in still adopts with zero writes', async (t) => {
  const c = await converged(2);
  const node = c.get('node-01');
  const fresh = new IpsecController(node.kernel, { graceMs: 1000 });
  for (const key of node.controller.keys.keys()) fresh.addKey(key);
  const r = await fresh.step({
    local: { ...node.info, spi: undefined },
    peers: [c.get('node-02').published!],
    now: 5,
  });
  t.equal(r.writes, 0);
  t.equal(r.advertiseSpi, 1);
});

t.test('peer reboot: new boot ID -> its SAs are replaced (delete + add, never a key "update")', async (t) => {
  const c = await converged(3);
  const a = c.get('node-01');
  const oldInbound = a.kernel.listStates().find((s) => s.src === '198.18.0.2')!;
  c.reboot('node-02', 1);
  const seen = a.kernel.received.length;
  await c.step('node-02'); // rebooted node comes back and publishes its new boot ID
  await c.step('node-01');
  await c.step('node-03');
  await c.step('node-02');
  t.same(c.problems(), []);
  const newInbound = a.kernel.listStates().find((s) => s.src === '198.18.0.2')!;
  t.not(newInbound.aead!.key.toString('hex'), oldInbound.aead!.key.toString('hex'), 'key re-derived');
  const ops = a.kernel.received.slice(seen).map((o) => o.kind);
  t.same(ops.filter((k) => k === 'deleteState').length, 2, 'in + out SA deleted');
  t.same(ops.filter((k) => k === 'addState').length, 2, 'in + out SA added');
});

t.test('peer removal: its SAs and policies go, others keep working', async (t) => {
  const c = await converged(3);
  c.remove('node-03');
  await c.stepAll();
  t.same(c.problems(), []);
  for (const n of names(c)) {
    const k = c.get(n).kernel;
    t.notOk(
      k.listStates().some((s) => s.src === '198.18.0.3' || s.dst === '198.18.0.3'),
      `${n}: no SA for the removed peer`,
    );
    t.notOk(
      k.listPolicies().some((p) => p.templates.some((x) => x.src === '198.18.0.3' || x.dst === '198.18.0.3')),
      `${n}: no policy for the removed peer`,
    );
  }
  t.same([...c.get('node-01').controller.peerIdAllocation.keys()], ['node-02']);
});

t.test('foreign XFRM objects survive every step, rotation and uninstall', async (t) => {
  const c = new SimCluster({ graceMs: 10 });
  for (let i = 1; i <= 3; i++) c.add(makeNode(i));
  const a = c.get('node-01');
  const foreignStates: XfrmState[] = [
    {
      family: 4,
      src: '192.0.2.1',
      dst: '198.18.0.1',
      spi: 1,
      proto: 50,
      mode: 'tunnel',
      reqid: 7,
      esn: false,
      replayWindow: 32,
      mark: { value: 0x5, mask: 0xff },
    },
    {
      family: 4,
      src: '198.18.0.1',
      dst: '192.0.2.1',
      spi: 0x100,
      proto: 50,
      mode: 'transport',
      reqid: 7,
      esn: false,
      replayWindow: 0,
    },
    // Carries our mark type byte but another reqid: not ours.
    {
      family: 4,
      src: '198.18.0.1',
      dst: '198.18.0.9',
      spi: 1,
      proto: 50,
      mode: 'tunnel',
      reqid: 99,
      esn: false,
      replayWindow: 0,
      mark: { value: 0xe0, mask: 0xff },
    },
  ];
  const foreignPolicies: XfrmPolicy[] = [
    {
      dir: 'out',
      selector: { family: 4, src: '0.0.0.0/0', dst: '192.0.2.0/24', proto: 0 },
      priority: 100,
      action: 'allow',
      templates: [{ family: 4, src: '198.18.0.1', dst: '192.0.2.1', proto: 50, mode: 'tunnel', reqid: 7, spi: 0 }],
    },
    // Looks like our block policy but with another priority.
    {
      dir: 'out',
      selector: { family: 4, src: '0.0.0.0/0', dst: '192.0.2.0/24', proto: 0 },
      mark: { value: 0xe0, mask: 0xff },
      priority: 5,
      action: 'block',
      templates: [],
    },
  ];
  foreignStates.forEach((s) => a.kernel.seedState(s));
  foreignPolicies.forEach((p) => a.kernel.seedPolicy(p));
  const snapshot = (): string =>
    JSON.stringify([
      a.kernel.listStates().filter((s) => s.reqid !== KMESH_REQID),
      a.kernel
        .listPolicies()
        .filter((p) => p.priority === 100 || p.priority === 5)
        .map((p) => ({ ...p, index: 0 })),
    ]);
  const before = snapshot();
  await c.stepAll();
  await c.stepAll();
  t.same(c.problems(), []);
  t.same(a.last!.foreign, { states: 3, policies: 2 });
  for (const n of names(c)) c.giveKey(n, 2);
  for (let i = 0; i < 4; i++) {
    c.now += 100;
    await c.stepAll();
  }
  t.same(c.spisInKernel('node-02'), [2]);
  c.remove('node-03');
  await c.stepAll();
  t.equal(snapshot(), before, 'foreign objects unchanged after rotation and removal');
  const removed = await removeOwned(a.kernel);
  t.ok(removed.writes > 0);
  t.equal(a.kernel.listStates().length, 3, 'uninstall leaves only the foreign states');
  t.equal(a.kernel.listPolicies().length, 2, 'and the foreign policies');
  t.equal(snapshot(), before);
});

t.test('per-peer failure isolation: one peer failing does not stop the others or the rotation elsewhere', async (t) => {
  const c = await converged(3);
  const a = c.get('node-01');
  for (const n of names(c)) c.giveKey(n, 2);
  // node-01's kernel refuses the new inbound SA from node-03.
  a.kernel.injectFailure((op) => op.kind === 'addState' && op.state.src === '198.18.0.3' && op.state.spi === 2, 12, {
    message: 'injected: out of memory',
  });
  c.now += 10;
  const r = await c.step('node-01');
  const p3 = r.peers.find((p) => p.name === 'node-03')!;
  t.equal(p3.ok, false);
  t.match(p3.issues, [{ errno: 12, code: 'ENOMEM', message: 'injected: out of memory' }]);
  t.same(p3.inboundSpis, [1]);
  t.equal(r.peers.find((p) => p.name === 'node-02')!.ok, true);
  t.equal(r.advertiseSpi, 1, 'SPI 2 not advertised: inbound SA for node-03 missing');
  t.notOk(r.converged);
  await stepChecked(t, c, names(c));
  t.equal(c.get('node-02').published?.spi, 2, 'other nodes rotate');
  a.kernel.clearFailures();
  const healed = await c.step('node-01');
  t.equal(healed.advertiseSpi, 2, 'advertised once the SA is in');
  t.ok(healed.converged);
  t.same(c.problems(), []);
});

t.test(
  'bad input: invalid local node throws before touching the kernel; bad peers are reported, good ones served',
  async (t) => {
    const kernel = new FakeXfrmKernel();
    const ctl = new IpsecController(kernel);
    ctl.addKey(makeKey(1));
    await t.rejects(
      ctl.step({ local: { ...makeNode(1), addresses: ['nope'] }, peers: [], now: 0 }),
      /local node: address "nope"/,
    );
    t.equal(kernel.writes + kernel.dumpCalls, 0);
    const r = await ctl.step({
      local: makeNode(1),
      peers: [makeNode(2), makeNode(3, { podCIDRs: ['10.244.2.0/25'] }), makeNode(4, { spi: 0 }), makeNode(1)],
      now: 0,
    });
    t.same(
      r.peers.map((p) => [p.name, p.planned, p.reasons[0] ?? '']),
      [
        ['node-02', true, ''],
        ['node-03', false, 'pod CIDR 10.244.2.0/25 overlaps 10.244.2.0/24 of node node-02'],
        ['node-04', false, 'spi 0 is not a positive integer'],
      ],
    );
    t.equal(r.advertiseSpi, 1);
  },
);

t.test('no key yet: only the block policy, nothing advertised', async (t) => {
  const kernel = new FakeXfrmKernel();
  const r = await new IpsecController(kernel).step({ local: makeNode(1), peers: [makeNode(2)], now: 0 });
  t.equal(r.advertiseSpi, undefined);
  t.same(
    r.peers.map((p) => p.reasons),
    [['no IPsec key yet']],
  );
  t.same(
    kernel.listPolicies().map((p) => p.action),
    ['block'],
  );
  t.equal(kernel.listStates().length, 0);
});

t.test('peer ids name the addresses the inbound SAs are for: the first of each family both nodes have', async (t) => {
  const ctl = new IpsecController(new FakeXfrmKernel());
  ctl.addKey(makeKey(1));
  const dualStack = makeNode(2, { addresses: ['198.18.0.2', '198.18.1.2', 'fd00:198:18::2'] });
  const r = await ctl.step({ local: makeNode(1), peers: [dualStack, makeNode(3)], now: 0 });
  t.same(r.peerAddressIds, [
    { address: '198.18.0.2', peerId: 1 },
    { address: '198.18.0.3', peerId: 2 },
  ]);
});

t.test('the controller owns the key history: one copy, added to, read and retired in one place', async (t) => {
  const kernel = new FakeXfrmKernel();
  const ctl = new IpsecController(kernel, { graceMs: 100 });
  ctl.addKey(makeKey(1));
  ctl.addKey(makeKey(1));
  t.throws(() => ctl.addKey({ ...makeKey(1), key: Buffer.alloc(36, 0xee) }), /SPI 1 is already in use/);
  const peer = makeNode(2);
  let r = await ctl.step({ local: makeNode(1), peers: [peer], now: 0 });
  t.equal(r.advertiseSpi, 1);
  ctl.addKey(makeKey(2));
  t.same(ctl.keys.spis(), [1, 2], 'a new key is held at once');
  r = await ctl.step({ local: { ...makeNode(1), spi: 1 }, peers: [peer], now: 10 });
  t.equal(r.advertiseSpi, 2, 'and planned by the next step');
  const gated = ctl.step({ local: { ...makeNode(1), spi: 2 }, peers: [{ ...peer, spi: 2 }], now: 20 });
  ctl.addKey(makeKey(3));
  r = await gated;
  t.same(r.heldSpis, [1, 2], 'a key added while a step runs is not in that step');
  r = await ctl.step({ local: { ...makeNode(1), spi: 2 }, peers: [{ ...peer, spi: 3 }], now: 30 });
  t.same(r.heldSpis, [1, 2, 3], 'nor lost by it: the next step plans it');
  r = await ctl.step({ local: { ...makeNode(1), spi: 3 }, peers: [{ ...peer, spi: 3 }], now: 200 });
  t.same(r.retiredSpis, [1], 'SPI 1 unused since t=20');
  t.same(ctl.keys.spis(), [2, 3], 'retired SPIs leave the one history');
  r = await ctl.step({ local: { ...makeNode(1), spi: 3 }, peers: [{ ...peer, spi: 3 }], now: 300 });
  t.same(r.retiredSpis, [2], 'SPI 2 unused since t=200');
  t.same(ctl.keys.spis(), [3]);
  t.same([...new Set(kernel.listStates().map((s) => s.spi))], [3]);
});

t.test('the default grace is the daemon default, 60 s, above the 30 s resync', async (t) => {
  t.equal(DEFAULT_ROTATION_GRACE_SECONDS * 1000, DEFAULT_ROTATION_GRACE_MS);
  t.ok(DEFAULT_ROTATION_GRACE_SECONDS > DEFAULT_RESYNC_SECONDS, 'grace > resync');
  const c = new SimCluster({});
  for (let i = 1; i <= 2; i++) c.add(makeNode(i));
  await c.stepAll();
  await c.stepAll();
  for (const n of names(c)) c.giveKey(n, 2);
  c.now = 1_000;
  await c.stepAll();
  await c.stepAll();
  t.same(c.spisInKernel('node-01'), [1, 2], 'both SPIs held while the grace runs');
  c.now = 1_000 + 59_000;
  await c.stepAll();
  t.same(c.spisInKernel('node-01'), [1, 2], 'still held after 59 s');
  c.now = 1_000 + 61_000;
  await c.stepAll();
  t.same(c.spisInKernel('node-01'), [2], 'retired after 60 s');
});

/** Three nodes on SPI 1 that publish what they send with; node-03's view of the cluster then freezes. */
async function frozenRotation(t: Test, rule: 'acknowledged' | 'timer', writesCut: boolean): Promise<SimCluster> {
  const c = new SimCluster({ graceMs: 1000, ackFloorMs: 100, retirementRule: rule }, { reports: true });
  for (let i = 1; i <= 3; i++) c.add(makeNode(i));
  await c.stepAll();
  await c.stepAll();
  await c.stepAll();
  t.same(c.problems(), []);
  c.freeze('node-03', writesCut);
  for (const n of names(c)) c.giveKey(n, 2); // the kubelet projects the Secret: the key arrives everywhere
  return c;
}

for (const writesCut of [false, true]) {
  const how = writesCut ? 'API access cut' : 'watch stalled';
  t.test(
    `acknowledged retirement: a peer whose view is frozen (${how}) keeps its old SAs past the grace`,
    async (t) => {
      const c = await frozenRotation(t, 'acknowledged', writesCut);
      for (let i = 0; i < 20; i++) {
        c.now += 500; // 10 s in all: ten times the grace period
        await stepChecked(t, c, names(c));
      }
      t.same(c.spisInKernel('node-01'), [1, 2], 'node-01 keeps SPI 1: node-03 still reports sending with it');
      t.same(c.spisInKernel('node-02'), [1, 2]);
      t.same(c.get('node-03').sending, [1], 'the frozen node still sends with SPI 1');
      const pending = c.get('node-01').last!.pendingRetirements;
      t.same(
        pending.map((p) => [p.spi, p.waitingFor]),
        writesCut ? [] : [[1, { peers: ['node-03'] }]],
        writesCut ? 'node-03 never published SPI 2: SPI 1 is not even superseded' : 'waiting for node-03 by name',
      );
      c.thaw('node-03');
      let steps = 0;
      while (c.spisInKernel('node-01').length > 1 && steps < 20) {
        c.now += 50;
        await stepChecked(t, c, names(c));
        steps++;
      }
      for (const n of names(c)) t.same(c.spisInKernel(n), [2], `${n}: SPI 1 gone once node-03 reported`);
      t.ok(steps * 50 <= 400, `gone ${steps * 50} ms after the thaw (floor 100 ms), not a grace period later`);
    },
  );
}

t.test('the timer rule (the old one) fails the same fault: SPI 1 removed under the frozen peer', async (t) => {
  const c = await frozenRotation(t, 'timer', false);
  const broken: string[] = [];
  for (let i = 0; i < 20; i++) {
    c.now += 500;
    await c.stepAll();
    broken.push(...c.problems());
  }
  t.ok(
    broken.some((p) => /^node-03 -> node-0[12]: .*no inbound SA spi 1/.test(p)),
    `node-03's packets with SPI 1 find no SA: ${broken[0] ?? 'none'}`,
  );
});

t.test('acknowledged retirement survives a restart: the restarted node adopts and finishes', async (t) => {
  const c = new SimCluster({ graceMs: 1000, ackFloorMs: 100 }, { reports: true });
  for (let i = 1; i <= 3; i++) c.add(makeNode(i));
  for (let i = 0; i < 3; i++) await c.stepAll();
  for (const n of names(c)) c.giveKey(n, 2);
  c.now += 10;
  await stepChecked(t, c, names(c));
  await stepChecked(t, c, names(c));
  c.restart('node-02');
  const r = await c.step('node-02');
  t.equal(r.writes, 0, 'adopted with zero writes');
  for (let i = 0; i < 4; i++) {
    c.now += 60;
    await stepChecked(t, c, names(c));
  }
  for (const n of names(c)) t.same(c.spisInKernel(n), [2], `${n}: retired on acknowledgement, well before the grace`);
});

t.test('key rollback: an older SPI is accepted only as the exact key held for it', (t) => {
  const ctl = new IpsecController(new FakeXfrmKernel(), { graceMs: 100 });
  ctl.addKey(makeKey(1));
  ctl.addKey(makeKey(3));
  t.doesNotThrow(() => ctl.addKey(makeKey(1)), 'the key held for SPI 1: nothing changes');
  t.throws(
    () => ctl.addKey(makeKey(2)),
    /SPI 2 is older than SPI 3 in force and not held any more: a key rollback is refused/,
  );
  const other = { ...makeKey(1), key: Buffer.alloc(36, 9) };
  t.throws(() => ctl.addKey(other), /SPI 1 is already in use with a different key/);
  t.same(ctl.keys.spis(), [1, 3]);
  t.end();
});

t.test('status rows: an unchanged step hands out the last rows; a failure and its repair make new ones', async (t) => {
  const c = await converged(3);
  const a = c.get('node-01');
  const first = (await c.step('node-01')).peers;
  const again = (await c.step('node-01')).peers;
  t.ok(
    again.every((row, i) => row === first[i]),
    'nothing changed: the very row objects',
  );
  for (const n of names(c)) c.giveKey(n, 2);
  a.kernel.injectFailure((op) => op.kind === 'addState' && op.state.src === '198.18.0.3' && op.state.spi === 2, 12);
  c.now += 10;
  const failing = await c.step('node-01');
  const row3 = (r: typeof failing): (typeof failing.peers)[number] => r.peers.find((p) => p.name === 'node-03')!;
  t.equal(row3(failing).ok, false);
  t.same(row3(failing).inboundSpis, [1]);
  const stillFailing = await c.step('node-01');
  t.equal(row3(stillFailing).ok, false, 'the SA is still refused: the row says so');
  a.kernel.clearFailures();
  const healed = await c.step('node-01');
  t.equal(row3(healed).ok, true, 'repaired: a new row, not the failing one');
  t.same(row3(healed).inboundSpis, [1, 2]);
  t.same(row3(healed).issues, []);
  // (The healed step advertised SPI 2: the next one screens and plans the peers against the new local record.)
  const settled = await c.step('node-01');
  t.equal(row3(await c.step('node-01')), row3(settled), 'and unchanged again: the same row');
  t.equal(row3(settled).ok, true);
});
