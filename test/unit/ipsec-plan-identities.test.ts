// The planner's identity guard (src/ipsec/plan-identities.ts): two planned objects with one kernel identity are
// refused, whatever else differs; objects taken out free their identity; objects under one hash are told apart.
import t from 'tap';
import { HashedSet, PlanIdentities } from '../../src/ipsec/plan-identities.js';
import { makeInboundSa, makeOutboundSa, makeOutPolicy } from '../fakes/xfrm-objects.js';

t.test('states: one per (family, dst, spi, proto, lookup mark); the rest does not count', (t) => {
  const ids = new PlanIdentities();
  const sa = makeOutboundSa();
  ids.addState(sa);
  t.throws(() => ids.addState({ ...sa, src: '198.18.0.9', reqid: 7 }), /two states with identity/);
  t.throws(() => ids.addState({ ...sa, mark: { value: 0x1e0, mask: 0xff } }), /two states/, 'same lookup mark');
  ids.addState({ ...sa, spi: 2 });
  ids.addState({ ...sa, dst: '198.18.0.3' });
  ids.addState(makeInboundSa());
  ids.addState(makeInboundSa({ mark: { value: 0x200d0, mask: 0xffff00ff } }));
  const v6 = makeOutboundSa({ family: 6, src: 'fd00::1', dst: 'fd00:0::2' });
  ids.addState(v6);
  t.throws(() => ids.addState({ ...v6, dst: 'fd00::2' }), /two states/, 'addresses compared in canonical form');
  ids.removeState(sa);
  ids.addState({ ...sa, src: '198.18.0.9' });
  ids.removeState(makeOutboundSa({ dst: '198.18.0.99' })); // not in: nothing happens
  t.end();
});

t.test('policies: one per (dir, selector, stored mark)', (t) => {
  const ids = new PlanIdentities();
  const p = makeOutPolicy();
  ids.addPolicy(p);
  t.throws(() => ids.addPolicy({ ...p, priority: 1, templates: [] }), /two policies with identity out\|4\|/);
  ids.addPolicy({ ...p, dir: 'fwd' });
  ids.addPolicy({ ...p, selector: { ...p.selector, dst: '10.244.3.0/24' } });
  ids.addPolicy({ ...p, mark: { value: 0xd0, mask: 0xff } });
  ids.removePolicy(p);
  ids.addPolicy({ ...p, priority: 1 });
  t.end();
});

t.test('many objects under one hash are told apart, and taken out one by one', (t) => {
  const set = new HashedSet<{ n: number }>(
    () => 42,
    (a, b) => a.n === b.n,
  );
  const items = Array.from({ length: 5 }, (_, n) => ({ n }));
  for (const x of items) t.equal(set.addUnlessTaken(x), undefined);
  for (const x of items) t.equal(set.find({ n: x.n }), x);
  t.equal(set.find({ n: 9 }), undefined);
  set.remove(items[2]!);
  t.equal(set.find({ n: 2 }), undefined);
  for (const x of [items[0]!, items[1]!, items[3]!]) set.remove(x);
  t.equal(set.find({ n: 4 }), items[4], 'the last one left');
  set.remove(items[4]!);
  t.equal(set.find({ n: 4 }), undefined);
  t.end();
});

t.test('addUnlessTaken: adds a new identity, hands back the holder of a taken one, under one hash or apart', (t) => {
  for (const hash of [() => 7, (x: { n: number }) => x.n]) {
    const set = new HashedSet<{ n: number }>(hash, (a, b) => a.n === b.n);
    const items = Array.from({ length: 4 }, (_, n) => ({ n }));
    for (const x of items) t.equal(set.addUnlessTaken(x), undefined, `${x.n} added`);
    for (const x of items) t.equal(set.addUnlessTaken({ n: x.n }), x, `${x.n} taken by the first`);
    for (const x of items) t.equal(set.find({ n: x.n }), x, 'nothing added twice');
    set.remove(items[1]!);
    t.equal(set.addUnlessTaken({ n: 1 }), undefined, 'free again once taken out');
  }
  t.end();
});

t.test("a 5,000-peer plan's worth of distinct identities goes in without a false clash", (t) => {
  const ids = new PlanIdentities();
  for (let i = 0; i < 10_000; i++) {
    const dst = `10.${i >> 8}.${i & 0xff}.1`;
    ids.addState(makeOutboundSa({ dst }));
    ids.addState(makeInboundSa({ mark: { value: ((i + 1) << 16) | 0xd0, mask: 0xffff00ff } }));
    ids.addPolicy(
      makeOutPolicy({ selector: { family: 4, src: '0.0.0.0/0', dst: `10.${i >> 8}.${i & 0xff}.0/24`, proto: 0 } }),
    );
  }
  t.pass('30,000 objects');
  t.end();
});
