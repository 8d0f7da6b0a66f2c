import t from 'tap';
import { EEXIST, EINVAL, ENOENT, ENOSYS, ESRCH, FakeXfrmKernel } from '../fakes/fake-xfrm-kernel.js';
import type { XfrmPolicy, XfrmState } from '../../src/xfrm/types.js';
import { aead, makeInboundSa, makeOutPolicy } from '../fakes/xfrm-objects.js';

const sa = (extra: Partial<XfrmState> = {}): XfrmState => makeInboundSa({ aead: aead(1), ...extra });
const pol = (extra: Partial<XfrmPolicy> = {}): XfrmPolicy => makeOutPolicy({ priority: 10, ...extra });

t.test('states: identity is (dst, spi, proto, mark); distinct peer marks coexist; EEXIST/ESRCH', async (t) => {
  const k = new FakeXfrmKernel();
  const r = await k.apply([
    { kind: 'addState', state: sa() },
    { kind: 'addState', state: sa({ src: '198.18.0.3', mark: { value: 0x200d0, mask: 0xffff00ff } }) },
    { kind: 'addState', state: sa({ src: '198.18.0.9' }) },
    { kind: 'addState', state: sa({ spi: 2 }) },
    {
      kind: 'deleteState',
      state: { family: 4, dst: '198.18.0.1', spi: 3, proto: 50, mark: { value: 0x100d0, mask: 0xffff00ff } },
    },
  ]);
  t.same(
    r.map((x) => x.errno),
    [0, 0, EEXIST, 0, ESRCH],
  );
  t.equal(k.listStates().length, 3);
  t.equal(k.writes, 5);
  t.equal(k.applyCalls, 1);
  const del = await k.apply([
    {
      kind: 'deleteState',
      state: { family: 4, dst: '198.18.0.1', spi: 1, proto: 50, mark: { value: 0x200d0, mask: 0xffff00ff } },
    },
  ]);
  t.equal(del[0]!.errno, 0);
  t.same(
    k
      .listStates()
      .map((s) => s.src)
      .sort(),
    ['198.18.0.2', '198.18.0.2'],
  );
});

t.test('states: the kernel mark rule (lookup value & x.mask == x.value); lookups hit the newest first', async (t) => {
  const k = new FakeXfrmKernel();
  k.seedState(sa());
  const wild = sa({ src: '192.0.2.1', reqid: 1, mark: { value: 0, mask: 0 } });
  const r = await k.apply([
    { kind: 'addState', state: wild }, // its lookup value 0 does not hit 0x100d0/0xffff00ff
    { kind: 'addState', state: { ...wild, src: '192.0.2.2' } }, // hits the wildcard
    { kind: 'addState', state: sa({ src: '198.18.0.3', mark: { value: 0x200d0, mask: 0xffff00ff } }) }, // hits the wildcard too
  ]);
  t.same(
    r.map((x) => x.errno),
    [0, EEXIST, EEXIST],
  );
  // Deleting ours by its mark hits the newer wildcard state: the kernel behaviour the reconciler guards against.
  await k.apply([
    {
      kind: 'deleteState',
      state: { family: 4, dst: '198.18.0.1', spi: 1, proto: 50, mark: { value: 0x100d0, mask: 0xffff00ff } },
    },
  ]);
  t.same(
    k.listStates().map((s) => s.reqid),
    [0x6b6d],
  );
});

t.test('states: refused as the adapter (codec, EINVAL) and the kernel (ENOSYS, EINVAL) refuse them', async (t) => {
  const k = new FakeXfrmKernel();
  const r = await k.apply([
    { kind: 'addState', state: sa({ dst: 'fd00::1' }) },
    { kind: 'addState', state: sa({ aead: { name: 'rfc4106(gcm(aes))', key: Buffer.alloc(35), icvBits: 128 } }) },
    { kind: 'addState', state: sa({ aead: { name: 'gcm(aes)', key: Buffer.alloc(36), icvBits: 128 } }) },
    { kind: 'addState', state: sa({ aead: { name: 'rfc4106(gcm(aes))', key: Buffer.alloc(36), icvBits: 100 } }) },
    { kind: 'addState', state: sa({ replayWindow: 0 }) },
  ]);
  t.same(
    r.map((x) => x.errno),
    [EINVAL, EINVAL, ENOSYS, ENOSYS, EINVAL],
  );
  t.same(
    r.map((x) => x.message),
    [
      'state dst fd00::1 spi 1: dst: "fd00::1" is an IPv6 address where IPv4 was expected',
      'Invalid key length',
      'Requested AEAD algorithm not found',
      'Requested AEAD algorithm not found',
      'ESN requires a replay window',
    ],
  );
});

t.test('policies: identity (dir, selector, mark); add EEXIST, update replaces or inserts, delete ENOENT', async (t) => {
  const k = new FakeXfrmKernel();
  const r = await k.apply([
    { kind: 'addPolicy', policy: pol() },
    { kind: 'addPolicy', policy: pol({ priority: 99 }) },
    { kind: 'addPolicy', policy: pol({ dir: 'fwd' }) },
    { kind: 'addPolicy', policy: pol({ mark: { value: 0xe0, mask: 0xffff } }) },
    { kind: 'updatePolicy', policy: pol({ templates: [{ ...pol().templates[0]!, spi: 2 }] }) },
    {
      kind: 'updatePolicy',
      policy: pol({ selector: { family: 4, src: '0.0.0.0/0', dst: '10.244.3.0/24', proto: 0 } }),
    },
    { kind: 'deletePolicy', policy: { dir: 'in', selector: pol().selector, mark: pol().mark } },
    { kind: 'addPolicy', policy: pol({ selector: { family: 4, src: '0.0.0.0/0', dst: 'fd00::/64', proto: 0 } }) },
  ]);
  t.same(
    r.map((x) => x.errno),
    [0, EEXIST, 0, 0, 0, 0, ENOENT, EINVAL],
  );
  t.equal(k.listPolicies().length, 4);
  t.equal(k.listPolicies()[0]!.templates[0]!.spi, 2, 'updated in place');
  t.ok(
    k.listPolicies().every((p) => typeof p.index === 'number'),
    'kernel index assigned',
  );
  const [del] = await k.apply([
    { kind: 'deletePolicy', policy: { dir: 'out', selector: pol().selector, mark: pol().mark } },
  ]);
  t.equal(del!.errno, 0);
  t.equal(k.listPolicies().length, 3);
});

t.test('injected failures: matching ops fail without effect, the requested number of times', async (t) => {
  const k = new FakeXfrmKernel();
  k.injectFailure((op) => op.kind === 'addPolicy', 12, { message: 'no memory', times: 1 });
  const r = await k.apply([
    { kind: 'addPolicy', policy: pol() },
    { kind: 'addPolicy', policy: pol() },
  ]);
  t.same(
    r.map((x) => [x.errno, x.message]),
    [
      [12, 'no memory'],
      [0, undefined],
    ],
  );
  k.injectFailure(() => true, 1);
  t.equal((await k.apply([{ kind: 'addState', state: sa() }]))[0]!.errno, 1);
  k.clearFailures();
  t.equal((await k.apply([{ kind: 'addState', state: sa() }]))[0]!.errno, 0);
  t.equal(k.received.length, 4);
});

t.test('dumps are copies: callers cannot change kernel state through them', async (t) => {
  const k = new FakeXfrmKernel();
  k.seedState(sa());
  k.seedPolicy(pol());
  const [s] = await k.dumpStates();
  s!.aead!.key.fill(0);
  s!.mark!.value = 1;
  const [p] = await k.dumpPolicies();
  p!.templates[0]!.spi = 99;
  t.equal(k.listStates()[0]!.aead!.key[0], 1);
  t.equal(k.listStates()[0]!.mark!.value, 0x100d0);
  t.equal(k.listPolicies()[0]!.templates[0]!.spi, 1);
  t.equal(k.dumpCalls, 2);
  t.equal(k.writes, 0, 'seeding is not counted');
});

t.test(
  'stored objects: every field kept, keys in buffers of their own, ops not kept with recordOps: false',
  async (t) => {
    const k = new FakeXfrmKernel({ recordOps: false });
    const state = sa({ outputMark: { value: 0xd0, mask: 0xff }, esn: false, replayWindow: 32 });
    const policy = pol({ mark: { value: 0x1e0, mask: 0xff } });
    await k.apply([
      { kind: 'addState', state },
      { kind: 'addPolicy', policy },
    ]);
    t.equal(k.received.length, 0, 'no op kept');
    t.equal(k.writes, 2, 'still counted');
    const [stored] = k.listStates();
    t.strictSame(stored, { ...state, mark: { value: 0x100d0, mask: 0xffff00ff } }, 'the state as given (mark masked)');
    t.equal(stored!.aead!.key.buffer.byteLength, 36, 'the key copy holds no shared pool');
    t.strictSame(k.listPolicies(), [{ ...policy, mark: { value: 0xe0, mask: 0xff }, index: 1 }], 'the policy as given');
    const recording = new FakeXfrmKernel();
    await recording.apply([{ kind: 'addState', state }]);
    t.equal(recording.received.length, 1, 'kept by default');
  },
);
