import t from 'tap';
import { CidrClaims } from '../../src/ipsec/cidr-claims.js';
import {
  canonicalIp,
  canonicalSelectorCidr,
  cidrsOverlap,
  formatIp,
  ipFamily,
  normaliseCidr,
  parseCidr,
  parseIp,
} from '../../src/ipsec/ip-address.js';

t.test('strict parsing', (t) => {
  for (const good of [
    '0.0.0.0',
    '255.255.255.255',
    '10.0.0.1',
    '::',
    '::1',
    'fd00::1',
    'FD00:0:0:0:0:0:0:1',
    '::ffff:1.2.3.4',
    '1:2:3:4:5:6:7:8',
  ]) {
    t.ok(parseIp(good), good);
  }
  for (const bad of [
    '',
    '1.2.3',
    '1.2.3.4.5',
    '01.2.3.4',
    '256.1.1.1',
    '1.2.3.-1',
    'a.b.c.d',
    ':::',
    '1::2::3',
    '12345::',
    'fe80::1%eth0',
    '1:2:3:4:5:6:7:8:9',
    '1:2:3:4:5:6:7::8',
    '1.2.3.4::',
    '1.2.3.4::1',
    ' 1.2.3.4',
    '1.2.3.4/32',
  ]) {
    t.equal(parseIp(bad), undefined, JSON.stringify(bad));
  }
  t.equal(ipFamily('10.0.0.1'), 4);
  t.equal(ipFamily('::1'), 6);
  t.equal(ipFamily('x'), undefined);
  t.end();
});

t.test('canonical text (RFC 5952)', (t) => {
  t.equal(canonicalIp('FD00:0000:0:0:0:0:0:0001'), 'fd00::1');
  t.equal(canonicalIp('1:0:0:2:0:0:0:3'), '1:0:0:2::3', 'longest zero run compressed');
  t.equal(canonicalIp('1:0:0:2:2:0:0:3'), '1::2:2:0:0:3', 'first of equal runs');
  t.equal(canonicalIp('1:0:2:3:4:5:6:7'), '1:0:2:3:4:5:6:7', 'a single zero group is not compressed');
  t.equal(canonicalIp('::ffff:1.2.3.4'), '::ffff:102:304');
  t.equal(canonicalIp('::'), '::');
  t.equal(canonicalIp('10.0.0.1'), '10.0.0.1');
  t.equal(canonicalIp('junk'), 'junk', 'unparseable text is compared as is');
  t.equal(formatIp(new Uint8Array(16)), '::');
  t.end();
});

t.test('CIDRs: parse, normalise, selector form keeps host bits', (t) => {
  t.match(parseCidr('10.244.1.0/24'), { family: 4, prefixLength: 24 });
  for (const bad of ['10.0.0.0', '10.0.0.0/33', '10.0.0.0/', '10.0.0.0/024', '::/129', 'x/8', '10.0.0.0/-1']) {
    t.equal(parseCidr(bad), undefined, bad);
  }
  t.equal(normaliseCidr('10.244.1.77/24'), '10.244.1.0/24');
  t.equal(normaliseCidr('10.244.1.77/0'), '0.0.0.0/0');
  t.equal(normaliseCidr('FD00:10:244:1:ffff::/64'), 'fd00:10:244:1::/64');
  t.equal(normaliseCidr('10.1.2.3/30'), '10.1.2.0/30');
  t.equal(normaliseCidr('bad'), undefined);
  t.equal(canonicalSelectorCidr('10.244.1.77/24'), '10.244.1.77/24');
  t.equal(canonicalSelectorCidr('FD00::0/64'), 'fd00::/64');
  t.end();
});

t.test('overlap: one contains the other, same family only', (t) => {
  const c = (s: string) => parseCidr(s)!;
  t.ok(cidrsOverlap(c('10.0.0.0/8'), c('10.244.1.0/24')));
  t.ok(cidrsOverlap(c('10.244.1.0/24'), c('10.0.0.0/8')));
  t.ok(cidrsOverlap(c('10.244.1.0/24'), c('10.244.1.0/24')));
  t.notOk(cidrsOverlap(c('10.244.1.0/24'), c('10.244.2.0/24')));
  t.notOk(cidrsOverlap(c('10.244.1.0/25'), c('10.244.1.128/25')));
  t.ok(cidrsOverlap(c('0.0.0.0/0'), c('192.0.2.0/24')));
  t.notOk(cidrsOverlap(c('::/0'), c('10.0.0.0/8')));
  t.end();
});

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
      if (j !== i) claims.add(parseCidr(texts[j]!)!, { owner: `o${j}`, text: texts[j]! });
    const expected = texts.some((x, j) => j !== i && cidrsOverlap(parseCidr(x)!, parseCidr(texts[i]!)!));
    t.equal(claims.findOverlap(parseCidr(texts[i]!)!) !== undefined, expected, texts[i]!);
  }
  const claims = new CidrClaims();
  claims.add(parseCidr('10.244.1.0/24')!, { owner: 'a', text: '10.244.1.0/24' });
  t.same(claims.findOverlap(parseCidr('10.244.0.0/16')!), { owner: 'a', text: '10.244.1.0/24' });
  t.same(claims.findOverlap(parseCidr('10.244.1.5/32')!), { owner: 'a', text: '10.244.1.0/24' });
  t.equal(claims.findOverlap(parseCidr('10.245.0.0/16')!), undefined);
  t.end();
});
