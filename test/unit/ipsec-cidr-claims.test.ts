// The CIDR claims index of peer screening: it must find exactly the overlaps the pairwise test finds.
import t from 'tap';
import { CidrClaims } from '../../src/ipsec/cidr-claims.js';
import { cidrsOverlap, parseCidrLenient } from '../../src/model/ip-address.js';

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
