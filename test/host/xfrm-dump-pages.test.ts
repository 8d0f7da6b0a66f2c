// Host kernel tests (root) of the paged dumps (native/xfrm_dump.cc through NetlinkXfrmKernel), with policies in a
// namespace of our own (kmt-xfrm-dp-*): a dump read in pages of any size decodes to what the same dump read in one
// reply decodes to, and to what `ip xfrm policy` lists; pages end at whole messages; an empty table, a missing
// namespace and misuse of the native API fail or succeed as documented. SAs need ESP/AEAD, which the host kernel
// lacks: the VM suites dump them through the same path (test/vm/suites/xfrm-netlink.test.ts).
import t from 'tap';
import { loadAddon } from '../../src/native/addon.js';
import { addonXfrmDump } from '../../src/xfrm/netlink-addon.js';
import { encodeDumpPolicies } from '../../src/xfrm/netlink-codec.js';
import { splitMessages } from '../../src/xfrm/netlink-wire.js';
import { NetlinkXfrmKernel } from '../../src/xfrm/netlink-kernel.js';
import type { XfrmOp, XfrmPolicy } from '../../src/xfrm/types.js';
import { espTemplate, makeOutPolicy } from '../fakes/xfrm-objects.js';
import { addNetns, canonical, delNetns, oraclePolicies } from './xfrm-oracle.js';

const NS = `kmt-xfrm-dp-${process.pid}`;
const EMPTY_NS = `kmt-xfrm-dp0-${process.pid}`;
const skip = process.getuid?.() === 0 ? false : 'needs root (netns + NETLINK_XFRM)';
const POLICIES = 3000;
const noIndex = (p: XfrmPolicy): XfrmPolicy => ({ ...p, index: undefined });
const NLMSG_DONE = 3;

function policy(i: number): XfrmPolicy {
  return makeOutPolicy({
    selector: { family: 4, src: '0.0.0.0/0', dst: `10.${(i >> 8) & 0xff}.${i & 0xff}.0/24`, proto: 0 },
    templates: [espTemplate('198.18.0.1', `198.19.${(i >> 8) & 0xff}.${i & 0xff}`, 1 + (i % 7))],
  });
}

t.test('paged dumps', { skip }, async (t) => {
  addNetns(NS);
  addNetns(EMPTY_NS);
  t.teardown(() => {
    delNetns(NS);
    delNetns(EMPTY_NS);
  });
  const ops: XfrmOp[] = Array.from({ length: POLICIES }, (_, i) => ({ kind: 'addPolicy', policy: policy(i) }));
  const applied = await new NetlinkXfrmKernel({ netns: NS }).apply(ops);
  t.equal(applied.filter((r) => r.errno !== 0).length, 0, `${POLICIES} policies installed`);

  const whole = await new NetlinkXfrmKernel({ netns: NS, dumpPages: false }).dumpPolicies();
  t.equal(whole.length, POLICIES, 'the dump in one reply holds every policy');
  t.same(canonical(whole, noIndex), canonical(oraclePolicies(NS), noIndex), 'one reply: as ip xfrm policy lists them');
  for (const pageBytes of [1, 4096, 100_000, 64 * 1024 * 1024]) {
    const paged = await new NetlinkXfrmKernel({ netns: NS, dumpPageBytes: pageBytes }).dumpPolicies();
    t.same(paged, whole, `pages of at least ${pageBytes} bytes: the same policies in the same order`);
  }

  await t.test('each page ends at a whole message, and only the last holds the end of the dump', async (t) => {
    const pages = addonXfrmDump();
    const seq = 4242;
    const fd = pages.open(`/run/netns/${NS}`, encodeDumpPolicies(seq));
    const sizes: number[] = [];
    let messages = 0;
    let ended = false;
    try {
      while (!ended) {
        const page = await pages.next(fd, seq, 8192);
        sizes.push(page.length);
        const msgs = splitMessages(page);
        t.equal(
          msgs.reduce((n, m) => n + ((16 + m.payload.length + 3) & ~3), 0),
          page.length,
          `page ${sizes.length}: whole messages only`,
        );
        t.ok(
          msgs.every((m) => m.seq === seq),
          `page ${sizes.length}: only replies to the dump`,
        );
        ended = msgs.some((m) => m.type === NLMSG_DONE);
        t.equal(msgs.at(-1)?.type === NLMSG_DONE, ended, `page ${sizes.length}: the end, if there, comes last`);
        messages += msgs.filter((m) => m.type !== NLMSG_DONE).length;
      }
    } finally {
      pages.close(fd);
    }
    t.equal(messages, POLICIES, 'every policy in some page');
    t.ok(sizes.length > 10, `the dump came in ${sizes.length} pages`);
    t.ok(
      sizes.slice(0, -1).every((n) => n >= 8192),
      'every page but the last holds at least the bytes asked for',
    );
  });

  t.same(await new NetlinkXfrmKernel({ netns: EMPTY_NS }).dumpPolicies(), [], 'an empty table: no policies');
  t.same(await new NetlinkXfrmKernel({ netns: EMPTY_NS }).dumpStates(), [], 'an empty SAD: no SAs');
  await t.rejects(
    new NetlinkXfrmKernel({ netns: 'kmt-xfrm-dp-absent' }).dumpPolicies(),
    { code: 'KMESH_ERRNO', errno: 2, message: /kmt-xfrm-dp-absent/ },
    'a missing namespace: the typed error naming it',
  );
  t.throws(
    () => new NetlinkXfrmKernel({ netns: NS, dumpPageBytes: 0 }),
    /dump page size 0 is not an integer in 1\.\.67108864/,
    'a page size out of range is refused',
  );
});

t.test('the native API refuses what it cannot page', { skip }, (t) => {
  const raw = (loadAddon() as { xfrmDump: { open: (...a: unknown[]) => number; next: (...a: unknown[]) => unknown } })
    .xfrmDump;
  const notDump = Buffer.from(encodeDumpPolicies(1));
  notDump.writeUInt16LE(notDump.readUInt16LE(6) & ~0x300, 6); // NLM_F_DUMP cleared
  t.throws(() => raw.open('', notDump), /request lacks NLM_F_DUMP/);
  t.throws(() => raw.open('', Buffer.concat([encodeDumpPolicies(1), encodeDumpPolicies(2)])), /exactly one netlink/);
  t.throws(() => raw.open('', Buffer.alloc(4)), /not a netlink message/);
  t.throws(() => raw.next(3, 1, 0), /minBytes in 1\.\.64 MiB/);
  t.throws(() => raw.next(3, -1, 10), /seq in 0\.\.2\^32-1/);
  t.end();
});
