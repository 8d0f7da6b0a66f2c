// The all-at-once overlap check of a first screening (src/ipsec/cidr-overlap.ts): on every set it must say what
// testing every pair says.
import t from 'tap';
import { rng } from '../fakes/cidr-samples.js';
import { placeOf, placesOverlap, type CidrPlace } from '../../src/ipsec/cidr-claims.js';
import { anyOverlap } from '../../src/ipsec/cidr-overlap.js';
import { parseCidrLenient } from '../../src/model/ip-address.js';

const at = (text: string): CidrPlace => placeOf(parseCidrLenient(text)!);

/** The reference: every pair tested. */
function pairwise(places: readonly CidrPlace[]): boolean {
  for (let i = 0; i < places.length; i++)
    for (let j = 0; j < i; j++) if (placesOverlap(places[i]!, places[j]!)) return true;
  return false;
}

t.test('anyOverlap on chosen sets', (t) => {
  const cases: [string[], boolean][] = [
    [[], false],
    [['10.0.0.0/24'], false],
    [['10.0.0.0/24', '10.0.1.0/24'], false],
    [['10.0.0.0/24', '10.0.0.0/24'], true],
    [['10.0.1.0/24', '10.0.0.0/16'], true],
    [['10.0.0.0/16', '10.1.0.0/16', '10.0.255.255/32'], true],
    // Host bits as given: 10.0.0.77/24 is 10.0.0.0/24.
    [['10.0.0.77/24', '10.0.0.128/25'], true],
    [['10.0.0.77/25', '10.0.0.128/25'], false],
    [['0.0.0.0/0', '192.0.2.0/24'], true],
    [['255.255.255.255/32', '255.255.255.254/32', '128.0.0.0/1'], true],
    [['255.255.255.255/32', '255.255.255.254/32'], false],
    // Families never overlap each other.
    [['0.0.0.0/0', '::/0'], false],
    [['fd00::/64', 'fd00:0:0:1::/64', '10.0.0.0/8'], false],
    [['fd00::/64', 'fd00::1:0/112'], true],
    [['fd00::/8', 'fe00::/8', 'fd12:3456::/32'], true],
    [['fd00::ffff/64', 'fd00::/65'], true],
  ];
  for (const [texts, expected] of cases) {
    const places = texts.map(at);
    t.equal(anyOverlap(places), expected, texts.join(' '));
    t.equal(pairwise(places), expected, `${texts.join(' ')} (reference)`);
  }
  t.end();
});

t.test('anyOverlap agrees with the pairwise test on random sets of both families', (t) => {
  const next = rng(11);
  let overlapping = 0;
  let disagreeing = 0;
  const sets = 3000;
  for (let s = 0; s < sets; s++) {
    const texts: string[] = [];
    const n = 1 + next(12);
    for (let i = 0; i < n; i++) {
      if (next(4) === 0) texts.push(`fd00:${next(3).toString(16)}:${next(3).toString(16)}::${next(5)}/${next(129)}`);
      else texts.push(`10.${next(3)}.${next(4)}.${next(256)}/${16 + next(17)}`);
    }
    const places = texts.map(at);
    const expected = pairwise(places);
    if (anyOverlap(places) !== expected) disagreeing++;
    if (expected) overlapping++;
  }
  t.equal(disagreeing, 0, `no set of ${sets} disagrees`);
  t.ok(
    overlapping > sets / 5 && overlapping < sets - sets / 5,
    `a mix of sets with and without overlaps (${overlapping})`,
  );
  t.end();
});

t.test('anyOverlap on 5,000 disjoint /24s, then with one more that overlaps one of them', (t) => {
  const places: CidrPlace[] = [];
  for (let i = 0; i < 5000; i++) places.push(at(`10.${(i >> 8) & 0xff}.${i & 0xff}.0/24`));
  t.equal(anyOverlap(places), false);
  t.equal(anyOverlap([...places, at('10.19.100.64/26')]), true);
  t.equal(anyOverlap([...places, at('10.20.0.0/16')]), false, '10.20.0.0/16 lies past the last /24 (10.19.135.0)');
  t.end();
});
