// The datapath's entry builders hand out their last result for an equal input, and the diffs read the hex keys of a
// list they have seen (src/datapath/entries-memo.ts): the same results as built afresh, for less work per step.
import t from 'tap';
import { entryKeys, keepPairs, sameCidrList, samePairs } from '../../src/datapath/entries-memo.js';
import { diffEntries, nodeinfoEntries, peerEntries, podPeerEntries } from '../../src/datapath/map-layout.js';
import { diffPrefixEntries } from '../../src/datapath/prefix-map-order.js';
import { parseCidrStrict } from '../../src/model/ip-address.js';

t.test('an equal input gets the last result, frozen; another input a new one', (t) => {
  const peers = new Map([
    ['198.18.0.2', 1],
    ['198.18.0.3', 2],
  ]);
  const first = peerEntries(peers);
  t.ok(Object.isFrozen(first), 'shared, so frozen');
  t.equal(peerEntries(new Map(peers)), first, 'an equal map in another object: the same list');
  peers.set('198.18.0.4', 3);
  const grown = peerEntries(peers);
  t.not(grown, first, 'the caller changed its map: built again (the memo kept a copy)');
  t.equal(grown.length, 3);
  const reordered = new Map([...peers].reverse());
  t.not(peerEntries(reordered), grown, 'the same pairs in another order: built again (the order is kept)');
  t.throws(() => peerEntries(new Map([['not an address', 1]])), /not an IPv4 or IPv6 address/);
  t.equal(peerEntries(reordered).length, 3, 'a build that threw left the last result in place');

  const cidrs = ['10.1.0.0/24', 'fd00:1::/64'];
  const byText = nodeinfoEntries(cidrs);
  t.equal(nodeinfoEntries([...cidrs]), byText);
  const parsed = cidrs.map((c) => parseCidrStrict(c));
  const byParse = nodeinfoEntries(parsed);
  t.same(byParse, byText, 'parsed or as text: the same entries');
  t.equal(nodeinfoEntries(parsed.map((c) => ({ ...c }))), byParse, 'an equal parse in other objects');
  t.not(nodeinfoEntries(['10.1.0.0/25', 'fd00:1::/64']), byParse);
  t.end();
});

t.test('list and map comparisons', (t) => {
  const a = parseCidrStrict('10.0.0.0/8');
  t.ok(sameCidrList([a], [{ ...a }]));
  t.notOk(sameCidrList([a], ['10.0.0.0/8']), 'a text and a parse are not compared by meaning');
  t.notOk(sameCidrList([a], [{ ...a, prefixLen: 9 }]));
  t.notOk(sameCidrList([a], [{ ...a, bytes: Buffer.from([11, 0, 0, 0]) }]));
  const kept = keepPairs(
    new Map([
      ['x', 1],
      ['y', 2],
    ]),
  );
  t.ok(
    samePairs(
      kept,
      new Map([
        ['x', 1],
        ['y', 2],
      ]),
    ),
  );
  t.notOk(samePairs(kept, new Map([['x', 1]])), 'fewer pairs');
  t.notOk(
    samePairs(
      kept,
      new Map([
        ['x', 1],
        ['y', 3],
      ]),
    ),
    'another value',
  );
  t.notOk(
    samePairs(
      kept,
      new Map([
        ['y', 2],
        ['x', 1],
      ]),
    ),
    'another order',
  );
  t.end();
});

t.test('hex keys are cached for frozen lists only', (t) => {
  const frozen = podPeerEntries(new Map([['10.9.0.0/16', 4]]));
  t.equal(entryKeys(frozen), entryKeys(frozen), 'a builder result: read once');
  const open = [...frozen];
  t.not(entryKeys(open), entryKeys(open), 'a list that can still change: read each time');
  t.same(entryKeys(open).hex, entryKeys(frozen).hex);
  t.end();
});

t.test('diffs against the same list, another equal list, and a changed one', (t) => {
  const peers = peerEntries(
    new Map([
      ['198.18.0.2', 1],
      ['198.18.0.3', 2],
    ]),
  );
  const none = { added: 0, changed: 0, removed: 0 };
  t.same(diffEntries(peers, peers), { ops: [], change: none }, 'the same list: nothing to write');
  t.same(diffEntries([...peers], peers), { ops: [], change: none }, 'an equal list: nothing to write');
  const moved = peerEntries(
    new Map([
      ['198.18.0.2', 5],
      ['198.18.0.4', 2],
    ]),
  );
  t.same(diffEntries(peers, moved).change, { added: 1, changed: 1, removed: 1 });
  t.throws(
    () => diffEntries(peers, peers, 1, 'km_ipsec_peers'),
    /km_ipsec_peers would need 2 entries, more than its 1/,
  );

  const cidrs = nodeinfoEntries(['10.1.0.0/24', '10.2.0.0/24']);
  t.same(diffPrefixEntries(cidrs, cidrs, 16), { ops: [], change: none });
  t.same(diffPrefixEntries([...cidrs], cidrs, 16), { ops: [], change: none });
  const twice = [...cidrs, { key: cidrs[0]!.key, value: Buffer.from([9, 9, 9, 9]) }];
  const r = diffPrefixEntries([], twice, 16);
  t.same(r.change, { added: 2, changed: 0, removed: 0 }, 'a key listed twice is written once');
  t.same(r.ops.find((o) => o.key.equals(cidrs[0]!.key))?.value, cidrs[0]!.value, 'with its first value');
  t.end();
});
