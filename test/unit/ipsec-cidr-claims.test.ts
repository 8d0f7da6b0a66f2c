// The CIDR claims index of peer screening: it must find exactly the overlaps the pairwise test finds.
import t from 'tap';
import { rng } from '../fakes/cidr-samples.js';
import { CidrClaims, type CidrClaim } from '../../src/ipsec/cidr-claims.js';
import { cidrsOverlap, clearHostBits, parseCidrLenient, type ParsedCidr } from '../../src/model/ip-address.js';

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
    for (let j = 0; j < texts.length; j++)
      if (j !== i) claims.add(parseCidrLenient(texts[j]!)!, { owner: `o${j}`, text: texts[j]! });
    const expected = texts.some((x, j) => j !== i && cidrsOverlap(parseCidrLenient(x)!, parseCidrLenient(texts[i]!)!));
    t.equal(claims.findOverlap(parseCidrLenient(texts[i]!)!) !== undefined, expected, texts[i]!);
  }
  const claims = new CidrClaims();
  claims.add(parseCidrLenient('10.244.1.0/24')!, { owner: 'a', text: '10.244.1.0/24' });
  t.same(claims.findOverlap(parseCidrLenient('10.244.0.0/16')!), { owner: 'a', text: '10.244.1.0/24' });
  t.same(claims.findOverlap(parseCidrLenient('10.244.1.5/32')!), { owner: 'a', text: '10.244.1.0/24' });
  t.equal(claims.findOverlap(parseCidrLenient('10.245.0.0/16')!), undefined);
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
    const got = real.findOverlap(c);
    t.equal(got, reference.find(c), text);
    if (got) hits++;
    if (i % 2 === 0) {
      const claim = { owner: `o${i}`, text };
      real.add(c, claim);
      reference.add(c, claim);
    }
  }
  t.ok(hits > 50 && hits < texts.length - 50, `a mix of hits and misses (${hits} hits)`);
  t.end();
});
