// Host kernel tests (root) of the NETLINK_XFRM adapter for policies, in namespaces of our own (kmt-xfrm-*), with
// iproute2's `ip xfrm policy` as the oracle. States need ESP/AEAD, which the host kernel lacks: those tests skip
// here and run in the VM suite (test/vm/suites/xfrm-netlink.test.ts).
import t from 'tap';
import { NetlinkXfrmKernel } from '../../src/xfrm/netlink-kernel.js';
import type { XfrmOp, XfrmPolicy, XfrmState } from '../../src/xfrm/types.js';
import {
  aead,
  espTemplate,
  makeBlockPolicy,
  makeInboundSa,
  makeInPolicy,
  makeOutPolicy,
} from '../fakes/xfrm-objects.js';
import { addNetns, canonical, delNetns, ip, ipFails, oraclePolicies } from './xfrm-oracle.js';

const NS = `kmt-xfrm-pol-${process.pid}`;
const NS2 = `kmt-xfrm-pol2-${process.pid}`;
const rootReason = process.getuid?.() === 0 ? undefined : 'needs root (netns + NETLINK_XFRM)';
const noIndex = (p: XfrmPolicy): XfrmPolicy => ({ ...p, index: undefined });

function outPolicy(dst: string, peer: string, spi: number, priority = 100): XfrmPolicy {
  return makeOutPolicy({
    selector: { family: 4, src: '0.0.0.0/0', dst, proto: 0 },
    priority,
    templates: [espTemplate('198.18.0.1', peer, spi)],
  });
}

function inPolicy(dir: 'in' | 'fwd', src: string, peer: string): XfrmPolicy {
  return makeInPolicy({
    dir,
    selector: { family: 4, src, dst: '10.244.1.0/24', proto: 0 },
    templates: [espTemplate(peer, '198.18.0.1', 0)],
  });
}

const blockV4: XfrmPolicy = makeBlockPolicy();
const blockV6: XfrmPolicy = { ...blockV4, selector: { family: 6, src: '::/0', dst: '::/0', proto: 0 } };

const v6Out: XfrmPolicy = {
  dir: 'out',
  selector: { family: 6, src: '::/0', dst: 'fd00:10:244:2::/64', proto: 0 },
  mark: { value: 0xe0, mask: 0xff },
  priority: 100,
  action: 'allow',
  templates: [espTemplate('fd00:198:18::1', 'fd00:198:18::2', 1, 6)],
};
const v6In: XfrmPolicy = {
  dir: 'in',
  selector: { family: 6, src: 'fd00:10:244:2::/64', dst: 'fd00:10:244:1::/64', proto: 0 },
  mark: { value: 0xd0, mask: 0xff },
  priority: 100,
  action: 'allow',
  templates: [espTemplate('fd00:198:18::2', 'fd00:198:18::1', 0, 6)],
};

const ours: XfrmPolicy[] = [
  outPolicy('10.244.2.0/24', '198.18.0.2', 1),
  outPolicy('10.244.3.0/24', '198.18.0.3', 1),
  inPolicy('in', '10.244.2.0/24', '198.18.0.2'),
  inPolicy('fwd', '10.244.2.0/24', '198.18.0.2'),
  inPolicy('in', '10.244.3.0/24', '198.18.0.3'),
  inPolicy('fwd', '10.244.3.0/24', '198.18.0.3'),
  blockV4,
  blockV6,
  v6Out,
  v6In,
];

/** Foreign policies another tool installed: other marks, ports, transport mode, no mark, a different reqid. */
const FOREIGN = [
  [
    'src',
    '192.0.2.0/24',
    'dst',
    '192.0.2.128/25',
    'proto',
    'tcp',
    'dport',
    '443',
    'dir',
    'out',
    'priority',
    '5',
    'tmpl',
    'proto',
    'esp',
    'mode',
    'transport',
    'reqid',
    '7',
  ],
  [
    'src',
    '0.0.0.0/0',
    'dst',
    '10.244.2.0/24',
    'dir',
    'out',
    'mark',
    '0x1',
    'mask',
    '0xf00',
    'priority',
    '9',
    'tmpl',
    'src',
    '203.0.113.1',
    'dst',
    '203.0.113.2',
    'proto',
    'ah',
    'mode',
    'tunnel',
    'reqid',
    '1',
  ],
  ['src', '2001:db8::/32', 'dst', '2001:db8:1::/48', 'dir', 'fwd', 'action', 'block'],
];

t.test('policies over netlink, ip xfrm policy as the oracle', { skip: rootReason }, async (t) => {
  addNetns(NS);
  addNetns(NS2);
  t.teardown(() => {
    delNetns(NS);
    delNetns(NS2);
  });
  for (const args of FOREIGN) ip(['xfrm', 'policy', 'add', ...args], NS);
  const foreignBefore = oraclePolicies(NS);
  t.equal(foreignBefore.length, FOREIGN.length, 'foreign policies installed by ip');
  const kernel = new NetlinkXfrmKernel({ netns: NS });

  await t.test('foreign policies of any shape decode without error', async (t) => {
    const dumped = await kernel.dumpPolicies();
    // The ported selector decodes without ports (our model has none); everything else matches the oracle.
    t.same(canonical(dumped, noIndex), canonical(foreignBefore), 'dump equals ip xfrm policy');
    t.ok(
      dumped.every((p) => typeof p.index === 'number' && p.index > 0),
      'kernel indexes present',
    );
  });

  await t.test('add: in/out/fwd, IPv4 + IPv6, marks, priorities, templates with and without SPI, block', async (t) => {
    const results = await kernel.apply(ours.map((policy): XfrmOp => ({ kind: 'addPolicy', policy })));
    t.same(
      results.map((r) => r.errno),
      ours.map(() => 0),
      'every add acknowledged with errno 0',
    );
    t.same(canonical(oraclePolicies(NS)), canonical([...foreignBefore, ...ours]), 'ip sees exactly ours + foreign');
    t.same(canonical(await kernel.dumpPolicies(), noIndex), canonical(oraclePolicies(NS)), 'our dump = oracle');
    t.same(oraclePolicies(NS2), [], 'another namespace is untouched');
  });

  await t.test('update in place: priority and template SPI change, count stays', async (t) => {
    const updated = [outPolicy('10.244.2.0/24', '198.18.0.2', 2, 90), { ...v6Out, priority: 80 }];
    const results = await kernel.apply(updated.map((policy): XfrmOp => ({ kind: 'updatePolicy', policy })));
    t.same(
      results.map((r) => r.errno),
      [0, 0],
    );
    const now = oraclePolicies(NS);
    t.equal(now.length, foreignBefore.length + ours.length, 'no policy added or lost');
    const out2 = now.find((p) => p.dir === 'out' && p.selector.dst === '10.244.2.0/24' && p.mark?.value === 0xe0);
    t.equal(out2?.priority, 90);
    t.equal(out2?.templates[0]?.spi, 2, 'template now sends with SPI 2');
    t.equal(now.find((p) => p.selector.dst === 'fd00:10:244:2::/64')?.priority, 80);
  });

  await t.test('per-message errors with the kernel text; good ops in the same batch still apply', async (t) => {
    const extra = outPolicy('10.244.9.0/24', '198.18.0.9', 1);
    const badProto = outPolicy('10.244.8.0/24', '198.18.0.8', 1);
    badProto.templates[0]!.proto = 17;
    const ops: XfrmOp[] = [
      { kind: 'addPolicy', policy: blockV4 },
      { kind: 'deletePolicy', policy: { ...outPolicy('10.250.0.0/16', '198.18.0.2', 1) } },
      { kind: 'addPolicy', policy: { ...extra, selector: { ...extra.selector, dst: '10.244.9.1/24' } } },
      { kind: 'addPolicy', policy: badProto },
      { kind: 'addPolicy', policy: extra },
    ];
    const results = await kernel.apply(ops);
    t.equal(results.length, ops.length, 'one result per op');
    t.equal(results[0]?.errno, 17, 'duplicate add: EEXIST');
    t.equal(results[1]?.errno, 2, 'delete of a missing policy: ENOENT');
    t.equal(results[2]?.errno, 22, 'bad CIDR refused before sending: EINVAL');
    t.match(results[2]?.message, /10\.244\.9\.1\/24.*host bits/, 'names the bad field');
    t.equal(results[3]?.errno, 22, 'template with a non-IPsec protocol: EINVAL');
    t.match(results[3]?.message, /\S/, 'the kernel explained it (extack)');
    t.equal(results[4]?.errno, 0, 'the good op after the failures applied');
    t.ok(
      oraclePolicies(NS).some((p) => p.selector.dst === '10.244.9.0/24'),
      'ip sees the policy added after failures',
    );
    await kernel.apply([{ kind: 'deletePolicy', policy: extra }]);
  });

  await t.test('delete ours: foreign policies survive untouched', async (t) => {
    const results = await kernel.apply(ours.map((policy): XfrmOp => ({ kind: 'deletePolicy', policy })));
    t.same(
      results.map((r) => r.errno),
      ours.map(() => 0),
    );
    t.same(canonical(oraclePolicies(NS)), canonical(foreignBefore), 'exactly the foreign policies remain');
  });

  await t.test('thousands of policies in batches, small and default batch sizes', async (t) => {
    const many: XfrmPolicy[] = [];
    for (let i = 0; i < 2000; i++) {
      many.push(outPolicy(`10.${100 + (i >> 8)}.${i & 0xff}.0/24`, `198.19.${i >> 8}.${i & 0xff}`, 1));
    }
    const small = new NetlinkXfrmKernel({ netns: NS, batchSize: 7 });
    const first = await small.apply(many.slice(0, 100).map((policy): XfrmOp => ({ kind: 'addPolicy', policy })));
    t.ok(
      first.every((r) => r.errno === 0),
      '100 adds in batches of 7',
    );
    const rest = await kernel.apply(many.slice(100).map((policy): XfrmOp => ({ kind: 'addPolicy', policy })));
    t.ok(
      rest.every((r) => r.errno === 0),
      `1900 adds in batches of 500: ${rest.find((r) => r.errno !== 0)?.message ?? 'all ok'}`,
    );
    t.equal(oraclePolicies(NS).length, foreignBefore.length + many.length, 'ip counts them all');
    t.equal((await kernel.dumpPolicies()).length, foreignBefore.length + many.length, 'multipart dump reads them all');
    const gone = await kernel.apply(many.map((policy): XfrmOp => ({ kind: 'deletePolicy', policy })));
    t.ok(
      gone.every((r) => r.errno === 0),
      'all deleted',
    );
    t.same(canonical(oraclePolicies(NS)), canonical(foreignBefore), 'foreign policies survive');
  });
});

t.test('a missing namespace fails every op with a message naming it; dumps reject', { skip: rootReason }, async (t) => {
  const kernel = new NetlinkXfrmKernel({ netns: 'kmt-xfrm-absent' });
  const [result] = await kernel.apply([{ kind: 'addPolicy', policy: blockV4 }]);
  t.equal(result?.errno, 2);
  t.match(result?.message, /netns \/run\/netns\/kmt-xfrm-absent/);
  await t.rejects(kernel.dumpPolicies(), /kmt-xfrm-absent/);
  t.throws(() => new NetlinkXfrmKernel({ netns: '../etc' }), /neither a name/);
});

const aeadState: XfrmState = makeInboundSa({ aead: aead(7) });

t.test('states on the host kernel', { skip: rootReason }, async (t) => {
  const ns = `kmt-xfrm-sa-${process.pid}`;
  addNetns(ns);
  t.teardown(() => delNetns(ns));
  const kernel = new NetlinkXfrmKernel({ netns: ns });
  const [result] = await kernel.apply([{ kind: 'addState', state: aeadState }]);
  const hostLacksAead = /AEAD|not found|type/.test(
    ipFails(
      [
        'xfrm',
        'state',
        'add',
        'src',
        '1.1.1.1',
        'dst',
        '1.1.1.2',
        'proto',
        'esp',
        'spi',
        '9',
        'aead',
        'rfc4106(gcm(aes))',
        `0x${'ab'.repeat(36)}`,
        '128',
      ],
      ns,
    ),
  );
  const hasAead = hostLacksAead ? false : 'this kernel has ESP/AEAD: states are covered in the VM suite';
  await t.test('adding an SA fails with the kernel text when ESP/AEAD is missing', { skip: hasAead }, async (t) => {
    t.not(result?.errno, 0, 'adding an SA fails');
    t.match(result?.message, /AEAD|not found/, `clear kernel text: "${result?.message ?? ''}"`);
    t.same(await kernel.dumpStates(), [], 'nothing half-installed');
  });
});
