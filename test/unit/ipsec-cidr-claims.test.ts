// The CIDR claims index of peer screening: it must find exactly the overlaps the pairwise test finds.
import t from 'tap';
import { rng } from '../fakes/cidr-samples.js';
import { CidrClaims, placeOf, placesOverlap, type CidrClaim, type CidrPlace } from '../../src/ipsec/cidr-claims.js';
import { cidrsOverlap, clearHostBits, parseCidrLenient, type ParsedCidr } from '../../src/model/ip-address.js';

/** The place of a CIDR text (it parses). */
const at = (text: string): CidrPlace => placeOf(parseCidrLenient(text)!);
/** `owner`'s claim of a CIDR text. */
const claimOf = (text: string, owner: string): CidrClaim => ({ ...at(text), owner, text });

t.test('CidrClaims finds the same overlaps as the pairwise test', (t) => {
  const texts = [
    '10.0.0.0/8',
    '10.244.1.0/24',
    '10.244.1.128/25',
    '192.0.2.0/24',
    '192.0.2.7/32',
    'fd00::/8',
    'fd00:1::/64',
    '::/0',
    '0.0.0.0/0',
    '172.16.0.0/12',
    '172.31.255.0/24',
  ];
  for (let i = 0; i < texts.length; i++) {
    const claims = new CidrClaims();
    for (let j = 0; j < texts.length; j++) if (j !== i) claims.add(claimOf(texts[j]!, `o${j}`));
    const expected = texts.some((x, j) => j !== i && cidrsOverlap(parseCidrLenient(x)!, parseCidrLenient(texts[i]!)!));
    t.equal(claims.findOverlap(at(texts[i]!)) !== undefined, expected, texts[i]!);
  }
  const claims = new CidrClaims();
  const claim = claimOf('10.244.1.0/24', 'a');
  claims.add(claim);
  t.equal(claims.findOverlap(at('10.244.0.0/16')), claim);
  t.equal(claims.findOverlap(at('10.244.1.5/32')), claim);
  t.equal(claims.findOverlap(at('10.245.0.0/16')), undefined);
  t.end();
});

t.test('CidrClaims returns the claim the plain index returns: first claimant inside, else the outermost', (t) => {
  // The reference: one string key per (family, length, network), every length of every claim, no shortcuts.
  const keyOf = (c: ParsedCidr, length: number): string =>
    `${c.family}/${length}/${Array.from(clearHostBits(new Uint8Array(c.bytes), length)).join('.')}`;
  class Reference {
    exact = new Map<string, CidrClaim>();
    inside = new Map<string, CidrClaim>();
    add(c: ParsedCidr, claim: CidrClaim): void {
      if (!this.exact.has(keyOf(c, c.prefixLen))) this.exact.set(keyOf(c, c.prefixLen), claim);
      for (let l = 0; l <= c.prefixLen; l++) if (!this.inside.has(keyOf(c, l))) this.inside.set(keyOf(c, l), claim);
    }
    find(c: ParsedCidr): CidrClaim | undefined {
      const inner = this.inside.get(keyOf(c, c.prefixLen));
      if (inner) return inner;
      for (let l = 0; l < c.prefixLen; l++) {
        const outer = this.exact.get(keyOf(c, l));
        if (outer) return outer;
      }
      return undefined;
    }
  }
  // A deterministic spread of nested and disjoint CIDRs of both families, host bits included.
  const next = rng(7);
  const texts: string[] = [];
  for (let i = 0; i < 400; i++) {
    if (i % 4 === 3) texts.push(`fd00:${next(4).toString(16)}:${next(3).toString(16)}::${next(9)}/${next(129)}`);
    else texts.push(`10.${next(3)}.${next(4)}.${next(256)}/${next(33)}`);
  }
  const real = new CidrClaims();
  const reference = new Reference();
  let hits = 0;
  for (const [i, text] of texts.entries()) {
    const c = parseCidrLenient(text)!;
    const got = real.findOverlap(at(text));
    t.equal(got, reference.find(c), text);
    if (got) hits++;
    if (i % 2 === 0) {
      const claim = claimOf(text, `o${i}`);
      real.add(claim);
      reference.add(c, claim);
    }
  }
  // The places' overlap test agrees with the parsed CIDRs' on every pair of these (both families, host bits too).
  let overlapping = 0;
  let disagreeing = 0;
  for (let i = 0; i < texts.length; i += 3) {
    for (let j = 0; j < texts.length; j += 7) {
      const expected = cidrsOverlap(parseCidrLenient(texts[i]!)!, parseCidrLenient(texts[j]!)!);
      if (placesOverlap(at(texts[i]!), at(texts[j]!)) !== expected) disagreeing++;
      if (expected) overlapping++;
    }
  }
  t.equal(disagreeing, 0, 'placesOverlap agrees with cidrsOverlap');
  t.ok(overlapping > 100, `on overlapping pairs too (${overlapping})`);
  t.ok(hits > 50 && hits < texts.length - 50, `a mix of hits and misses (${hits} hits)`);
  t.end();
});
