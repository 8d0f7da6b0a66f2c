// The write order of LPM-trie maps (src/datapath/prefix-map-order.ts), replayed through a model of the kernel's
// longest-prefix match: after every single write, every probed address is answered as before the change or as after
// it (an address remote before and after never loses its answer), the map never holds more than its capacity, and
// the end state is the desired one. The previous order (all updates, then all deletes) fails the same replay.
import t from 'tap';

import { diffPrefixEntries } from '../../src/datapath/prefix-map-order.js';
import { nodeinfoEntries, NODEINFO_V4, NODEINFO_V6, type MapEntry, type MapOp } from '../../src/datapath/map-layout.js';
import { parseCidrStrict, prefixMatches, type Family, type ParsedCidr } from '../../src/model/ip-address.js';
import { cidrText, probe, randomCidr, rng } from '../fakes/cidr-samples.js';

/** The kernel's answer for an address: the value of the longest key matching it (or 0). */
function lookup(map: ReadonlyMap<string, MapEntry>, family: Family, addr: Uint8Array): number {
  const bytes = Buffer.alloc(16);
  Buffer.from(addr).copy(bytes);
  let best = -1;
  let value = 0;
  for (const { key, value: v } of map.values()) {
    const len = key.readUInt32LE(0);
    if (len > (family === 4 ? 32 : 128) || len <= best) continue;
    if (prefixMatches(key.subarray(4), bytes, len)) {
      best = len;
      value = v.readUInt32LE(0);
    }
  }
  return value & (family === 4 ? NODEINFO_V4 : NODEINFO_V6);
}

interface Replay {
  /** Writes after which some probe was answered neither as before nor as after the change. */
  mixed: number;
  peak: number;
  endsAsDesired: boolean;
}

function replay(
  current: readonly MapEntry[],
  desired: readonly MapEntry[],
  ops: readonly MapOp[],
  probes: readonly { family: Family; addr: Uint8Array }[],
): Replay {
  const map = new Map(current.map((e) => [e.key.toString('hex'), e]));
  const want = new Map(desired.map((e) => [e.key.toString('hex'), e]));
  const before = probes.map((p) => lookup(map, p.family, p.addr));
  const after = probes.map((p) => lookup(want, p.family, p.addr));
  let mixed = 0;
  let peak = map.size;
  for (const op of ops) {
    const hex = op.key.toString('hex');
    if (op.value) {
      peak = Math.max(peak, map.size + 1); // an in-place update of a full trie fails before Linux 6.13
      map.set(hex, { key: op.key, value: op.value });
    } else {
      map.delete(hex);
    }
    if (probes.some((p, i) => ![before[i], after[i]].includes(lookup(map, p.family, p.addr)))) mixed++;
  }
  const endsAsDesired =
    map.size === want.size && [...want].every(([hex, e]) => map.get(hex)?.value.equals(e.value) === true);
  return { mixed, peak, endsAsDesired };
}

/** Probes: both ends of every CIDR of both sets, and addresses near them. */
function probesFor(cidrs: readonly ParsedCidr[], rnd: (n: number) => number): { family: Family; addr: Uint8Array }[] {
  const out: { family: Family; addr: Uint8Array }[] = [];
  for (const c of cidrs) {
    const last = Buffer.from(c.bytes);
    for (let bit = c.prefixLen; bit < last.length * 8; bit++) last[bit >> 3]! |= 0x80 >> (bit & 7);
    out.push({ family: c.family, addr: c.bytes }, { family: c.family, addr: last });
  }
  for (let i = 0; i < 60; i++) {
    const family: Family = rnd(2) === 0 ? 4 : 6;
    out.push({ family, addr: probe(rnd, cidrs, family) });
  }
  return out;
}

/** The order before this module: updates in desired order, then deletes in dump order. */
function updatesThenDeletes(current: readonly MapEntry[], desired: readonly MapEntry[]): MapOp[] {
  const have = new Map(current.map((e) => [e.key.toString('hex'), e.value]));
  const want = new Set(desired.map((e) => e.key.toString('hex')));
  const ops: MapOp[] = desired
    .filter((e) => !have.get(e.key.toString('hex'))?.equals(e.value))
    .map((e) => ({ key: e.key, value: e.value }));
  for (const e of current) if (!want.has(e.key.toString('hex'))) ops.push({ key: e.key });
  return ops;
}

t.test('every write leaves each address answered as before or as after the change (random nested sets)', (t) => {
  const rnd = rng(515);
  let oldOrderMixed = 0;
  for (let n = 0; n < 400; n++) {
    const a = Array.from({ length: 1 + rnd(10) }, () => randomCidr(rnd, rnd(2) === 0 ? 4 : 6));
    const b = [
      ...a.filter(() => rnd(3) === 0),
      ...Array.from({ length: rnd(10) }, () => randomCidr(rnd, rnd(2) === 0 ? 4 : 6)),
    ];
    const current = nodeinfoEntries(a);
    const desired = nodeinfoEntries(b);
    const probes = probesFor([...a, ...b], rnd);
    const { ops } = diffPrefixEntries(current, desired, 64, 'km_nodeinfo');
    const r = replay(current, desired, ops, probes);
    if (r.mixed !== 0 || !r.endsAsDesired) {
      t.fail(`case ${n}: ${a.map(cidrText).join(' ')} -> ${b.map(cidrText).join(' ')}: ${JSON.stringify(r)}`);
      break;
    }
    oldOrderMixed += replay(current, desired, updatesThenDeletes(current, desired), probes).mixed > 0 ? 1 : 0;
  }
  t.ok(oldOrderMixed > 0, `the replay catches the old order (${oldOrderMixed} of 400 cases answered a mix)`);
  t.end();
});

t.test('an address remote before and after stays remote: IPv4 and IPv6 prefixes sharing a key', (t) => {
  // 10.1.0.0/16 (IPv4) and 0a00::/8 (IPv6, the same leading byte as 10.0.0.0/8) make way for 8.0.0.0/6: removing
  // the /16 before the /8 key would answer 10.1.2.3 from the IPv6-only /8 entry, "not remote".
  const current = nodeinfoEntries(['10.1.0.0/16', '0a00::/8']);
  const desired = nodeinfoEntries(['8.0.0.0/6']);
  const probes = [{ family: 4 as Family, addr: parseCidrStrict('10.1.2.3/32').bytes }];
  t.equal(replay(current, desired, updatesThenDeletes(current, desired), probes).mixed, 1, 'the old order: a gap');
  const { ops } = diffPrefixEntries(current, desired, 16, 'km_nodeinfo');
  t.same(replay(current, desired, ops, probes), { mixed: 0, peak: 3, endsAsDesired: true });
  t.end();
});

t.test('two disjoint sets that each fit the capacity fit one after the other', (t) => {
  const a = Array.from({ length: 10000 }, (_, i) => `10.${i >> 8}.${i & 255}.0/24`);
  const b = Array.from({ length: 10000 }, (_, i) => `10.${100 + (i >> 8)}.${i & 255}.0/24`);
  const current = nodeinfoEntries(a);
  const desired = nodeinfoEntries(b);
  t.throws(() => diffPrefixEntries(current, nodeinfoEntries([...a, ...b]), 16384, 'km_nodeinfo'), {
    message: 'km_nodeinfo would need 20000 entries, more than its 16384',
  });
  const { ops, change } = diffPrefixEntries(current, desired, 16384, 'km_nodeinfo');
  t.same(change, { added: 10000, changed: 0, removed: 10000 });
  const r = replay(current, desired, ops, []);
  t.equal(r.peak, 10000, 'never more than one set at once');
  t.ok(r.endsAsDesired);
  t.equal(updatesThenDeletes(current, desired).length, 20000);
  t.equal(replay(current, desired, updatesThenDeletes(current, desired), []).peak, 20000, 'the old order: 20,000');
  t.end();
});

t.test('a change that cannot be made within the capacity throws before any write, naming the counts', (t) => {
  // One /16 replaced by its 256 /24s: all overlap, so the /24s must be in before the /16 goes.
  const current = nodeinfoEntries(['10.1.0.0/16', ...Array.from({ length: 100 }, (_, i) => `10.2.${i}.0/24`)]);
  const desired = nodeinfoEntries(Array.from({ length: 256 }, (_, i) => `10.1.${i}.0/24`));
  t.throws(() => diffPrefixEntries(current, desired, 256, 'km_nodeinfo'), {
    message:
      'km_nodeinfo: changing 101 entries into 256 needs 257 at once (overlapping old and new prefixes are ' +
      'replaced together), more than its 256',
  });
  t.equal(replay(current, desired, diffPrefixEntries(current, desired, 257, 'km_nodeinfo').ops, []).peak, 257);
  t.end();
});

t.test('unchanged entries write nothing; changed values are updated in place', (t) => {
  const current = nodeinfoEntries(['10.1.0.0/16', 'fd00::/64']);
  t.same(diffPrefixEntries(current, current, 16, 'm'), { ops: [], change: { added: 0, changed: 0, removed: 0 } });
  const desired = nodeinfoEntries(['10.1.0.0/16', 'fd00::/64', '0a01::/16']); // 0a01::/16 = 10.1.0.0/16's key
  const { ops, change } = diffPrefixEntries(current, desired, 16, 'm');
  t.same(change, { added: 0, changed: 1, removed: 0 });
  t.equal(ops.length, 1);
  t.end();
});
