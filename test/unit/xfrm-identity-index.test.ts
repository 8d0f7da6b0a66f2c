// The string-free lookups of src/xfrm/identity.ts against the string identities they stand for: PolicyIndex and
// samePolicyIdentity must group exactly as policyIdentity() does, StateIndex.hits must find exactly what a scan
// of the stateBucket() with lookupHits() finds (newest first), and the interned decoder texts (formatAddress,
// formatCidr) must be the texts built the plain way. The objects vary every field an identity reads, in the
// spellings that canonicalise alike (IPv6 forms, masked-away mark bits) and those that do not (host bits).
import t from 'tap';
import {
  lookupHits,
  lookupMark,
  policyIdentity,
  PolicyIndex,
  samePolicyIdentity,
  StateIndex,
  stateBucket,
} from '../../src/xfrm/identity.js';
import { formatAddress, formatCidr } from '../../src/xfrm/netlink-address.js';
import type { XfrmMark, XfrmPolicy, XfrmState } from '../../src/xfrm/types.js';
import { makeInboundSa, makeOutPolicy } from '../fakes/xfrm-objects.js';

const MARKS: (XfrmMark | undefined)[] = [
  undefined,
  { value: 0, mask: 0 },
  { value: 0xe0, mask: 0xff },
  { value: 0x1e0, mask: 0xff }, // stored as 0xe0/0xff: the same identity as the one above
  { value: 0xd0, mask: 0xff },
  { value: 0x100d0, mask: 0xffff00ff },
  { value: 0x200d0, mask: 0xffff00ff },
];

function policies(): XfrmPolicy[] {
  const out: XfrmPolicy[] = [];
  const selectors: [4 | 6, string, string][] = [
    [4, '0.0.0.0/0', '10.244.2.0/24'],
    [4, '0.0.0.0/0', '10.244.3.0/24'],
    [4, '10.244.2.0/24', '10.244.1.0/24'],
    [4, '10.244.2.1/24', '10.244.1.0/24'], // host bits: a different selector for the kernel
    [6, '::/0', 'fd00:0:0:2::/64'],
    [6, '::/0', 'fd00::2:0:0:0:0/64'], // the same network in another spelling
    [6, '0:0::0/0', 'FD00:0000::2:0:0:0:0/64'],
  ];
  for (const dir of ['out', 'in', 'fwd'] as const)
    for (const [family, src, dst] of selectors)
      for (const proto of [0, 6])
        for (const mark of MARKS) {
          const base = makeOutPolicy();
          out.push({
            ...base,
            dir,
            selector: { family, src, dst, proto },
            ...(mark ? { mark } : { mark: undefined }),
          });
        }
  return out;
}

t.test('PolicyIndex groups exactly as a Map keyed by policyIdentity, in insertion order', (t) => {
  const all = policies();
  // Every policy twice, so groups have more than one member.
  const added = [...all, ...all.map((p) => ({ ...p, priority: p.priority + 1 }))];
  const index = new PolicyIndex<XfrmPolicy>();
  const byString = new Map<string, XfrmPolicy[]>();
  for (const p of added) {
    index.add(p);
    const id = policyIdentity(p);
    byString.set(id, [...(byString.get(id) ?? []), p]);
  }
  t.equal(index.size, added.length);
  t.ok(byString.size < all.length, 'some spellings share an identity (the test exercises canonicalisation)');
  let compared = 0;
  for (const key of added) {
    const got = index.get(key);
    t.same(got, byString.get(policyIdentity(key)));
    if (got !== undefined) t.equal(got[0], byString.get(policyIdentity(key))?.[0], 'the same objects, same order');
    compared++;
  }
  const absent = {
    ...makeOutPolicy(),
    selector: { family: 4 as const, src: '0.0.0.0/0', dst: '10.9.9.0/24', proto: 0 },
  };
  t.equal(index.get(absent), undefined);
  t.equal(compared, added.length);
  t.end();
});

t.test('samePolicyIdentity is policyIdentity equality', (t) => {
  const all = policies();
  let same = 0;
  for (const a of all)
    for (const b of all) {
      const expected = policyIdentity(a) === policyIdentity(b);
      if (samePolicyIdentity(a, b) !== expected) {
        t.fail(`${policyIdentity(a)} vs ${policyIdentity(b)}: expected ${String(expected)}`);
        return t.end();
      }
      if (expected) same++;
    }
  t.ok(same > all.length, 'pairs of distinct spellings compare equal');
  t.end();
});

function states(): XfrmState[] {
  const out: XfrmState[] = [];
  for (const dst of ['198.18.0.1', '198.18.0.2', 'fd00::1', 'fd00:0::1'])
    for (const spi of [1, 2, 0x80000001])
      for (const proto of [50, 51])
        for (const mark of MARKS) {
          const family = dst.includes(':') ? 6 : 4;
          out.push({ ...makeInboundSa(), family, dst, spi, proto, ...(mark ? { mark } : { mark: undefined }) });
        }
  return out;
}

/** A few states per dst (an outbound SA's case), each twice: the index keeps them as a plain list. */
function fewPerDst(): XfrmState[] {
  const out: XfrmState[] = [];
  for (const dst of ['198.18.0.3', '198.18.0.4', 'fd00::3', 'fd00:0::4'])
    for (const spi of [1, 2])
      for (const mark of [MARKS[2], MARKS[3]]) {
        const family = dst.includes(':') ? 6 : 4;
        out.push({ ...makeInboundSa(), family, dst, spi, proto: 50, mark });
      }
  return out;
}

for (const [name, make] of [
  ['many per dst (kept by mark value)', states],
  ['few per dst (kept as a list)', fewPerDst],
  ['both', () => [...fewPerDst(), ...states()]],
] as const) {
  t.test(
    `StateIndex.hits finds what a scan of the bucket finds, newest first; remove takes a state out: ${name}`,
    (t) => {
      const all = make();
      const index = new StateIndex<XfrmState>();
      for (const s of all) index.add(s);
      const scan = (key: XfrmState, within: XfrmState[]): XfrmState[] =>
        within.filter((x) => stateBucket(x) === stateBucket(key) && lookupHits(lookupMark(key.mark), x)).reverse();
      let nonEmpty = 0;
      for (const key of all) {
        const hits = index.hits(key);
        t.same(hits, scan(key, all));
        if (hits.length > 1) nonEmpty++;
      }
      t.ok(nonEmpty > 0, 'some lookups hit several states');
      const kept = all.filter((_, i) => i % 3 !== 0);
      for (const [i, s] of all.entries()) if (i % 3 === 0) index.remove(s);
      index.remove(all[0] as XfrmState);
      t.same(index.all(), kept, 'removing a state that is not in the index changes nothing');
      for (const key of all) t.same(index.hits(key), scan(key, kept));
      for (const s of kept) index.add(s);
      t.same(index.all(), kept, 'adding a state again changes nothing');
      for (const key of all) t.same(index.hits(key), scan(key, kept));
      for (const s of kept) index.remove(s);
      t.same(index.all(), []);
      t.same(index.hits(all[0] as XfrmState), []);
      t.end();
    },
  );
}

t.test('interned decoder texts equal the plain formatting, for every IPv4 prefix length', (t) => {
  const bytes = Buffer.alloc(16);
  for (const [a, b, c, d] of [
    [10, 244, 1, 0],
    [0, 0, 0, 0],
    [255, 255, 255, 255],
    [198, 18, 0, 2],
  ] as const) {
    bytes.set([a, b, c, d], 0);
    for (let round = 0; round < 2; round++) {
      t.equal(formatAddress(bytes, 0, 4), `${a}.${b}.${c}.${d}`);
      for (let len = 0; len <= 32; len++) t.equal(formatCidr(bytes, 0, 4, len), `${a}.${b}.${c}.${d}/${len}`);
    }
  }
  bytes.set([0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1], 0);
  t.equal(formatCidr(bytes, 0, 6, 64), 'fd00::1/64');
  t.end();
});
