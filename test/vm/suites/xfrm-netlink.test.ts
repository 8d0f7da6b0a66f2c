// VM suite (guest kernel with ESP + AEAD): SAs over the NETLINK_XFRM adapter in a namespace of our own, with
// iproute2's `ip xfrm state` as the oracle: AEAD key + ICV, reqid, mark, output-mark, ESN + replay window, IPv4
// and IPv6, per-peer inbound SAs sharing (dst, SPI), get, per-message errors, thousands per batch, and
// foreign SAs of other shapes that must survive everything.
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { NetlinkXfrmKernel } from '../../../src/xfrm/netlink-kernel.js';
import type { XfrmOp, XfrmState } from '../../../src/xfrm/types.js';
import { aead, aeadKey, AEAD_NAME, makeInboundSa, makeOutboundSa } from '../../fakes/xfrm-objects.js';
import { addNetns, canonical, delNetns, ip, ipFails, oracleStates } from '../../host/xfrm-oracle.js';

const NS = `kmt-xfrm-vmsa-${process.pid}`;
const inbound = (peer: number, spi: number, k: number): XfrmState =>
  makeInboundSa({
    src: `198.18.0.${peer}`,
    spi,
    aead: aead(k),
    mark: { value: ((peer << 16) | 0xd0) >>> 0, mask: 0xffff00ff },
  });

const ours: XfrmState[] = [
  makeOutboundSa({ dst: '198.18.0.2' }),
  makeOutboundSa({ dst: '198.18.0.3', aead: aead(0x12) }),
  // Two peers' inbound SAs with the same (dst, SPI): distinct because of the per-peer id in their marks.
  inbound(2, 1, 0x21),
  inbound(3, 1, 0x31),
  makeOutboundSa({ family: 6, src: 'fd00:198:18::1', dst: 'fd00:198:18::2', aead: aead(0x61) }),
  {
    ...inbound(2, 1, 0x62),
    family: 6,
    src: 'fd00:198:18::2',
    dst: 'fd00:198:18::1',
  },
];

/** Foreign SAs another tool installed: AH transport, ESP with enc + auth, ESP with another reqid and mark. */
const FOREIGN = [
  [
    'src',
    '192.0.2.1',
    'dst',
    '192.0.2.2',
    'proto',
    'ah',
    'spi',
    '0x200',
    'mode',
    'transport',
    'auth',
    'hmac(sha256)',
    `0x${'11'.repeat(32)}`,
  ],
  [
    'src',
    '192.0.2.1',
    'dst',
    '192.0.2.3',
    'proto',
    'esp',
    'spi',
    '0x300',
    'reqid',
    '9',
    'mode',
    'tunnel',
    'enc',
    'cbc(aes)',
    `0x${'22'.repeat(16)}`,
    'auth-trunc',
    'hmac(sha256)',
    `0x${'33'.repeat(32)}`,
    '128',
  ],
  [
    'src',
    '198.18.0.1',
    'dst',
    '198.18.0.2',
    'proto',
    'esp',
    'spi',
    '1',
    'reqid',
    '5',
    'mode',
    'tunnel',
    'aead',
    AEAD_NAME,
    `0x${'44'.repeat(36)}`,
    '128',
    'mark',
    '0x7',
    'mask',
    '0xf',
  ],
];

const probeReason = ((): string | false => {
  if (process.getuid?.() !== 0) return 'needs root';
  // The foreign shapes need AH and authenc (cbc + hmac); the guest's prepare step loads only ESP/AEAD modules.
  for (const mod of ['ah4', 'authenc', 'cbc', 'hmac', 'sha256_generic']) spawnSync('modprobe', ['-q', mod]);
  const probeNs = `kmt-xfrm-probe-${process.pid}`;
  addNetns(probeNs);
  const err = ipFails(
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
      AEAD_NAME,
      `0x${'ab'.repeat(36)}`,
      '128',
    ],
    probeNs,
  );
  delNetns(probeNs);
  return err === '' ? false : `kernel lacks ESP/AEAD (${err.trim()}); run this suite in the VM`;
})();

t.test('SAs over netlink, ip xfrm state as the oracle', { skip: probeReason, timeout: 600_000 }, async (t) => {
  addNetns(NS);
  t.teardown(() => delNetns(NS));
  for (const args of FOREIGN) ip(['xfrm', 'state', 'add', ...args], NS);
  const foreign = oracleStates(NS);
  t.equal(foreign.length, FOREIGN.length, 'foreign SAs installed by ip');
  const kernel = new NetlinkXfrmKernel({ netns: NS });

  await t.test('add ours: AEAD key + ICV, reqid, mark, output-mark, ESN 1024, IPv4 + IPv6', async (t) => {
    const results = await kernel.apply(ours.map((state): XfrmOp => ({ kind: 'addState', state })));
    t.same(
      results.map((r) => [r.errno, r.message]),
      ours.map(() => [0, undefined]),
    );
    t.same(canonical(oracleStates(NS)), canonical([...foreign, ...ours]), 'ip sees exactly ours + foreign');
    t.same(canonical(await kernel.dumpStates()), canonical(oracleStates(NS)), 'our dump = the oracle, keys included');
    const text = ip(
      [
        'xfrm',
        'state',
        'get',
        'src',
        '198.18.0.2',
        'dst',
        '198.18.0.1',
        'proto',
        'esp',
        'spi',
        '1',
        'mark',
        '0x200d0',
        'mask',
        '0xffff00ff',
      ],
      NS,
    );
    t.match(text, /output-mark 0xd0\/0xffff00ff/, 'ip shows output-mark 0xd0/0xffff00ff');
    t.match(text, /replay_window 1024/, 'ip shows the ESN replay window');
    t.match(text, /flag esn/, 'ip shows flag esn');
  });

  await t.test('get: one SA by (dst, spi, proto, mark), undefined when absent', async (t) => {
    t.same(await kernel.getState(inbound(3, 1, 0x31)), inbound(3, 1, 0x31));
    t.equal(await kernel.getState({ ...inbound(3, 1, 0x31), mark: { value: 0x900d0, mask: 0xffff00ff } }), undefined);
  });

  await t.test('per-message errors with the kernel text; the good op after them applies', async (t) => {
    const extra = makeOutboundSa({ dst: '198.18.0.9' });
    const ops: XfrmOp[] = [
      { kind: 'addState', state: ours[0]! },
      { kind: 'deleteState', state: makeOutboundSa({ dst: '198.18.0.99' }) },
      {
        kind: 'addState',
        state: makeOutboundSa({
          dst: '198.18.0.8',
          aead: { name: 'rfc4106(gcm(nope))', key: aeadKey(1), icvBits: 128 },
        }),
      },
      {
        kind: 'addState',
        state: makeOutboundSa({ dst: '198.18.0.7', aead: { name: AEAD_NAME, key: aeadKey(1), icvBits: 100 } }),
      },
      { kind: 'addState', state: extra },
    ];
    const results = await kernel.apply(ops);
    t.equal(results[0]?.errno, 17, 'duplicate add: EEXIST');
    t.equal(results[1]?.errno, 3, 'delete of a missing SA: ESRCH');
    t.not(results[2]?.errno, 0, 'unknown AEAD refused');
    t.match(results[2]?.message, /AEAD algorithm not found/, `kernel text: ${results[2]?.message ?? ''}`);
    t.not(results[3]?.errno, 0, 'bad ICV length refused');
    t.equal(results[4]?.errno, 0, 'the good op applied');
    t.ok(await kernel.getState(extra), 'and the kernel has it');
    await kernel.apply([{ kind: 'deleteState', state: extra }]);
  });

  await t.test('delete ours: foreign SAs (incl. one with our SPI and dst but another mark) survive', async (t) => {
    const results = await kernel.apply(ours.map((state): XfrmOp => ({ kind: 'deleteState', state })));
    t.same(
      results.map((r) => r.errno),
      ours.map(() => 0),
    );
    t.same(canonical(oracleStates(NS)), canonical(foreign), 'exactly the foreign SAs remain');
  });

  await t.test('1200 SAs in batches of 500: add, dump, delete', async (t) => {
    const many: XfrmState[] = [];
    for (let i = 0; i < 600; i++) {
      const peer = `198.19.${i >> 8}.${i & 0xff}`;
      many.push(makeOutboundSa({ dst: peer, aead: aead(i & 0xff) }));
      many.push({
        ...inbound(1, 1, i & 0xff),
        src: peer,
        mark: { value: (((i + 1) << 16) | 0xd0) >>> 0, mask: 0xffff00ff },
      });
    }
    const started = Date.now();
    const added = await kernel.apply(many.map((state): XfrmOp => ({ kind: 'addState', state })));
    t.equal(added.filter((r) => r.errno !== 0).length, 0, `all added (${added.find((r) => r.errno)?.message ?? 'ok'})`);
    t.comment(`added ${many.length} SAs in ${Date.now() - started} ms`);
    const dumped = await kernel.dumpStates();
    t.equal(dumped.length, many.length + foreign.length, 'multipart dump reads them all');
    t.equal(oracleStates(NS).length, many.length + foreign.length, 'ip counts them all');
    const removed = await kernel.apply(many.map((state): XfrmOp => ({ kind: 'deleteState', state })));
    t.equal(removed.filter((r) => r.errno !== 0).length, 0, 'all deleted');
    t.same(canonical(oracleStates(NS)), canonical(foreign), 'foreign SAs survive');
  });
});
