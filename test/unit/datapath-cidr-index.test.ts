// Pure tests of the remote-CIDR index compiler (src/datapath/cidr-index.ts): its walk agrees with plain
// "inside some CIDR of that family" on random CIDR sets and addresses, its layout is canonical (order and
// duplicates do not matter, identical nodes are shared), the shared-prefix skip, the wide roots and zero tails,
// capacity, and the header bytes bpf/cidr_index.h reads.
import t from 'tap';
import {
  parseIpStrict,
  parseCidrStrict,
  prefixMatches,
  type Family,
  type ParsedCidr,
} from '../../src/model/ip-address.js';
import {
  CIDR_INDEX_CAPACITY,
  CIDR_RECORD_CAPACITY,
  CIDR_RECORDS_OFFSET,
  CIDR_INDEX_MAGIC,
  CIDR_NODE_SIZE,
  CIDR_POOL_SIZE,
  WIDE_ROOT_NODES,
  compileCidrIndex,
  decodeCidrHeader,
  encodeCidrHeader,
  encodeCidrPool,
  fitsCidrIndex,
  lookupCidrIndex,
} from '../../src/datapath/cidr-index.js';
import { probe, randomCidr, rng } from '../fakes/cidr-samples.js';

function inAny(cidrs: readonly ParsedCidr[], family: Family, addr: Buffer): boolean {
  return cidrs.some((c) => c.family === family && prefixMatches(c.bytes, addr, c.prefixLen));
}

t.test('the index walk answers exactly "inside a CIDR of this family"', (t) => {
  const rnd = rng(7);
  let checks = 0;
  let wrong = 0;
  let hits = 0;
  for (let set = 0; set < 300; set++) {
    const cidrs = Array.from({ length: 1 + rnd(12) }, () => randomCidr(rnd, rnd(2) === 0 ? 4 : 6));
    const index = compileCidrIndex(cidrs);
    for (let i = 0; i < 60; i++) {
      const family: Family = rnd(2) === 0 ? 4 : 6;
      const addr = probe(rnd, cidrs, family);
      const want = inAny(cidrs, family, addr);
      if (lookupCidrIndex(index, family, addr) !== want) wrong++;
      if (want) hits++;
      checks++;
    }
  }
  t.equal(wrong, 0, `${checks} random lookups over 300 random CIDR sets agree`);
  t.ok(hits > checks / 5 && hits < (checks * 4) / 5, `both answers are exercised (${hits} hits)`);
  t.end();
});

t.test('families never answer for each other', (t) => {
  // 32.1.0.0/16 and 2001::/16 have the same leading bytes.
  const index = compileCidrIndex(['32.1.0.0/16', 'fd00:1::/64']);
  t.equal(lookupCidrIndex(index, 4, parseIpStrict('32.1.5.9').bytes), true);
  t.equal(lookupCidrIndex(index, 6, parseIpStrict('2001::1').bytes), false, 'IPv6 2001:: is not 32.1.0.0/16');
  t.equal(lookupCidrIndex(index, 6, parseIpStrict('fd00:1::7').bytes), true);
  t.equal(lookupCidrIndex(index, 4, parseIpStrict('253.0.0.1').bytes), false, 'IPv4 fd.00.. is not fd00:1::/64');
  t.equal(index.v4?.skip, 1, 'IPv4: only the first byte is shared by a /16');
  t.end();
});

t.test('edge prefixes: /0, host routes, empty sets', (t) => {
  const all = compileCidrIndex(['0.0.0.0/0']);
  t.equal(lookupCidrIndex(all, 4, parseIpStrict('1.2.3.4').bytes), true);
  t.equal(lookupCidrIndex(all, 6, parseIpStrict('::1').bytes), false);
  t.same(all.v4, { root: 2, skip: 0, prefix: Buffer.alloc(0) }, 'a /0 is one all-remote wide root');
  t.ok(
    all.nodes.slice(2, 2 + WIDE_ROOT_NODES).every((n) => n.every((e) => e === 1)),
    'all 65,536 entries remote',
  );
  const hosts = compileCidrIndex(['10.1.2.3/32', 'fd00::5/128']);
  t.equal(lookupCidrIndex(hosts, 4, parseIpStrict('10.1.2.3').bytes), true);
  t.equal(lookupCidrIndex(hosts, 4, parseIpStrict('10.1.2.4').bytes), false);
  t.equal(lookupCidrIndex(hosts, 6, parseIpStrict('fd00::5').bytes), true);
  t.equal(lookupCidrIndex(hosts, 6, parseIpStrict('fd00::4').bytes), false);
  t.equal(hosts.v4?.skip, 2, 'a /32 skips two bytes: the wide root takes the last two');
  t.equal(hosts.v6?.skip, 14);
  const none = compileCidrIndex([]);
  t.equal(none.v4, undefined);
  t.equal(none.v6, undefined);
  t.equal(none.nodes.length, 2, 'header and the reserved node only');
  t.equal(lookupCidrIndex(none, 4, parseIpStrict('10.0.0.1').bytes), false);
  t.end();
});

t.test('the layout is canonical and shares identical nodes', (t) => {
  const cidrs = [
    ...Array.from({ length: 800 }, (_, i) => `10.${64 + (i >> 8)}.${i & 255}.0/24`),
    ...Array.from({ length: 200 }, (_, i) => `fd00:10:${(i + 1).toString(16)}::/64`),
  ];
  const index = compileCidrIndex(cidrs);
  const shuffled = [...cidrs].reverse();
  shuffled.push(cidrs[3]!, cidrs[900]!);
  t.equal(compileCidrIndex(shuffled).fingerprint, index.fingerprint, 'order and duplicates do not matter');
  t.not(compileCidrIndex(cidrs.slice(1)).fingerprint, index.fingerprint, 'another set, another fingerprint');
  t.same(index.v4?.prefix, Buffer.from([10]), 'IPv4 skip: the shared 10.');
  t.equal(index.v6?.skip, 5, 'IPv6 skip: the shared fd00:0010:00');
  // IPv4: the wide root on the second and third bytes, whose 800 entries are remote (/24s end there): no other
  // node. IPv6: the wide root on the sixth and seventh bytes (values 0x0100-0xc800), whose 200 entries say
  // "remote if the eighth byte is zero": no node, no record.
  t.equal(index.nodes.length, 2 + 2 * WIDE_ROOT_NODES, 'only the two wide roots');
  t.same(index.records, [], 'zero tails need no record');
  t.equal(index.nodes[index.v6!.root + 0xa7]![0], 0xc000 | 8, 'fd00:10:a7::/64: the next 8 bits zero');
  t.equal(lookupCidrIndex(index, 6, parseIpStrict('fd00:10:a7::9').bytes), true);
  t.equal(lookupCidrIndex(index, 6, parseIpStrict('fd00:10:a7:1::9').bytes), false);
  t.ok(fitsCidrIndex(index));
  // An index equal to a set with the same addresses: 10.0.0.0/23 is 10.0.0.0/24 + 10.0.1.0/24.
  t.equal(
    compileCidrIndex(['10.0.0.0/23']).fingerprint,
    compileCidrIndex(['10.0.0.0/24', '10.0.1.0/24']).fingerprint,
    'same addresses, same index',
  );
  t.equal(
    compileCidrIndex(['10.0.0.0/8', '10.1.0.0/16']).fingerprint,
    compileCidrIndex(['10.0.0.0/8']).fingerprint,
    'a nested CIDR adds nothing',
  );
  t.end();
});

/** n random IPv6 host routes. */
function scatteredHosts(n: number, seed = 3): ParsedCidr[] {
  const rnd = rng(seed);
  return Array.from({ length: n }, () => {
    const a = Buffer.from(Array.from({ length: 16 }, () => rnd(256)));
    return { family: 6 as const, bytes: a, prefixLen: 128, text: '' };
  });
}

/** n pairs of IPv6 host routes differing only in the last bit: each pair needs its own chain of nodes. */
function deepPairs(n: number): ParsedCidr[] {
  return scatteredHosts(n, 11).flatMap((c) => {
    const twin = Buffer.from(c.bytes);
    twin[15]! ^= 1;
    return [c, { ...c, bytes: twin }];
  });
}

t.test('scattered CIDRs end in tail records, not chains of nodes', (t) => {
  const scattered = scatteredHosts(600);
  const index = compileCidrIndex(scattered);
  t.ok(index.nodes.length < 300, `${index.nodes.length} nodes`);
  t.ok(index.records.length > 500, `${index.records.length} records`);
  t.ok(fitsCidrIndex(index));
  t.ok(
    scattered.every((c) => lookupCidrIndex(index, 6, c.bytes)),
    'every host route is found',
  );
  t.end();
});

t.test('capacity: an index beyond its nodes or records does not fit and says so', (t) => {
  const pairs = compileCidrIndex(deepPairs(300));
  t.ok(pairs.nodes.length > CIDR_INDEX_CAPACITY, `${pairs.nodes.length} nodes needed`);
  t.notOk(fitsCidrIndex(pairs));
  const many = compileCidrIndex(scatteredHosts(CIDR_RECORD_CAPACITY + 500, 5));
  t.ok(many.records.length > CIDR_RECORD_CAPACITY, `${many.records.length} records needed`);
  t.notOk(fitsCidrIndex(many));
  t.throws(() => encodeCidrPool(pairs), /needs \d+ nodes and \d+ tail records, more than its 3072 and 16384/);
  t.end();
});

t.test('header and node bytes are what bpf/cidr_index.h reads', (t) => {
  const index = compileCidrIndex(['10.244.0.0/16', '10.244.7.128/25', 'fd00:10:244::/48']);
  const h = encodeCidrHeader(index);
  t.equal(h.length, CIDR_NODE_SIZE);
  t.equal(h.readUInt32LE(0), CIDR_INDEX_MAGIC, 'magic');
  t.equal(h.readUInt32LE(4), index.v4?.root, 'v4_root');
  t.equal(h.readUInt32LE(8), 1, 'v4_skip: 10.');
  t.same([...h.subarray(12, 16)], [10, 0, 0, 0], 'v4_prefix in network order');
  t.same([...h.subarray(16, 20)], [0xff, 0, 0, 0], 'v4_mask in network order');
  t.equal(h.readUInt32LE(20), index.v6?.root, 'v6_root');
  t.equal(h.readUInt32LE(24), 5, 'v6_skip: fd00:0010:02');
  t.equal(h.readUInt32LE(28), index.nodes.length, 'node count');
  t.equal(h.readBigUInt64LE(32), 0xfd00001002000000n, 'v6_prefix[0] as a host-order u64 of the big-endian half');
  t.equal(h.readBigUInt64LE(40), 0n);
  t.equal(h.readBigUInt64LE(48), 0xffffffffff000000n, 'v6_mask[0]');
  t.equal(h.readBigUInt64LE(56), 0n);
  t.equal(h.readUInt32LE(96), index.records.length, 'record count');
  t.same(decodeCidrHeader(h), {
    fingerprint: index.fingerprint,
    nodes: index.nodes.length,
    records: index.records.length,
  });
  t.same(decodeCidrHeader(Buffer.alloc(CIDR_NODE_SIZE)), { fingerprint: '', nodes: 0, records: 0 }, 'not a header');

  const pool = encodeCidrPool(index);
  t.equal(pool.length, CIDR_POOL_SIZE, 'one value: the whole pool');
  t.same(pool.subarray(0, CIDR_NODE_SIZE), h, 'the header is node 0');
  t.ok(
    pool.subarray(CIDR_NODE_SIZE, 2 * CIDR_NODE_SIZE).every((b) => b === 0),
    'node 1 is never used',
  );
  // Wide roots: entry root * 256 + the two bytes after the skip, as the program indexes the pool.
  const wide = (root: number, value: number): number => pool.readUInt16LE((root * 256 + value) * 2);
  t.equal(wide(index.v4!.root, (244 << 8) | 0), 1, '10.244.0.x: remote');
  t.equal(wide(index.v4!.root, (244 << 8) | 255), 1, '10.244.255.x: remote');
  t.equal(wide(index.v4!.root, (243 << 8) | 7), 0, '10.243.7.x: not remote');
  t.equal(wide(index.v6!.root, 0x4400), 1, 'fd00:10:244::/48 ends at the sixth byte: its 256 entries remote');
  t.equal(wide(index.v6!.root, 0x44ff), 1);
  t.equal(wide(index.v6!.root, 0x4500), 0);
  t.ok(
    pool.subarray(index.nodes.length * CIDR_NODE_SIZE).every((b) => b === 0),
    'unused nodes are zero',
  );
  t.end();
});

t.test('tail record bytes', (t) => {
  const index = compileCidrIndex(['10.1.2.0/24', '10.9.0.0/16', '10.1.4.64/26']);
  t.same(index.v4, { root: 2, skip: 1, prefix: Buffer.from([10]) });
  t.equal(index.nodes[2 + 9]![0], 1, '10.9.0.x: remote');
  t.equal(index.nodes[2 + 9]![255], 1, '10.9.255.x: remote');
  t.equal(index.nodes[2 + 1]![2], 1, '10.1.2.x: remote (the /24 ends at the wide root)');
  t.equal(index.nodes[2 + 1]![4], 0x8000, '10.1.4.x: tail record 0');
  t.same(index.records, [{ tail: Buffer.from([64, ...Array<number>(15).fill(0)]), bits: 2 }], 'the rest: 01...');
  const pool = encodeCidrPool(index);
  const at = CIDR_RECORDS_OFFSET;
  t.equal(pool.readBigUInt64LE(at), 0x4000000000000000n, 'value[0]');
  t.equal(pool.readBigUInt64LE(at + 8), 0n, 'value[1]');
  t.equal(pool.readBigUInt64LE(at + 16), 0xc000000000000000n, 'mask[0]');
  t.equal(pool.readBigUInt64LE(at + 24), 0n, 'mask[1]');
  t.equal(CIDR_RECORDS_OFFSET, 3072 * 512, 'records follow the 3072 node slots (KM_CIDR_NODES)');
  t.equal(lookupCidrIndex(index, 4, Buffer.from([10, 1, 2, 77])), true);
  t.equal(lookupCidrIndex(index, 4, Buffer.from([10, 1, 3, 77])), false);
  t.equal(lookupCidrIndex(index, 4, Buffer.from([10, 1, 4, 77])), true);
  t.equal(lookupCidrIndex(index, 4, Buffer.from([10, 1, 4, 128])), false);
  t.end();
});

t.test('zero tails: a CIDR whose remaining bits are zero needs no record, at every length', (t) => {
  // 10.1.0.0/17../32 beside 10.2.0.0/16 (skip 1, the wide root on the second and third bytes): up to /24 the
  // CIDR ends in the wide root (remote entries), after it its remaining 1..8 bits are zero.
  for (let len = 17; len <= 32; len++) {
    const index = compileCidrIndex([`10.1.0.0/${len}`, '10.2.0.0/16']);
    t.equal(index.records.length, 0, `/${len}: no record`);
    t.equal(index.nodes[index.v4!.root + 1]![0], len <= 24 ? 1 : 0xc000 | (len - 24), `/${len}: entry`);
  }
  // 64 and more zero bits: the walk tests both halves.
  const v6 = compileCidrIndex(['fd00:1::/128', 'fd00:2::/32']);
  t.equal(v6.records.length, 0);
  t.equal(lookupCidrIndex(v6, 6, parseIpStrict('fd00:1::').bytes), true);
  t.equal(lookupCidrIndex(v6, 6, parseIpStrict('fd00:1::1').bytes), false, 'the last bit');
  t.equal(lookupCidrIndex(v6, 6, parseIpStrict('fd00:1:0:0:8000::').bytes), false, 'the first bit of the lower half');
  t.equal(lookupCidrIndex(v6, 6, parseIpStrict('fd00:1:0:1::').bytes), false, 'the last bit of the upper half');
  t.end();
});

t.test('an invalid CIDR is refused by name', (t) => {
  t.throws(() => compileCidrIndex(['10.0.0.0/8', '10.0.0.1/8']), /CIDR "10.0.0.1\/8" has host bits set/);
  t.throws(() => compileCidrIndex(['nonsense']), /CIDR "nonsense" has no \/prefix length/);
  t.doesNotThrow(() => compileCidrIndex([parseCidrStrict('fd00::/8')]));
  t.end();
});
