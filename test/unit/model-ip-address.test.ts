// The model's IP address and CIDR values: one syntax, canonical text, the strict and the lenient CIDR
// contracts and overlap.
import t from 'tap';
import {
  canonicalIp,
  canonicalSelectorCidr,
  cidrsOverlap,
  formatIp,
  ipFamily,
  isIpAddress,
  normaliseCidr,
  normalisedCidrText,
  parseCidrLenient,
  parseCidrStrict,
  parseIp,
  parseIpStrict,
  readIpv4Cidr,
} from '../../src/model/ip-address.js';

t.test('one address syntax', (t) => {
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

t.test('a dotted quad is its own canonical form: the forms handed back as given equal the formatted ones', (t) => {
  const texts = ['0.0.0.0', '10.0.0.1', '10.244.1.0', '192.168.255.255', '255.255.255.255', '1.2.3.4'];
  for (const ip of texts) {
    t.equal(canonicalIp(ip), formatIp(parseIpStrict(ip).bytes), ip);
    t.ok(isIpAddress(ip));
    for (const len of [0, 8, 24, 31, 32]) {
      const cidr = `${ip}/${len}`;
      const parsed = parseCidrLenient(cidr)!;
      t.equal(canonicalSelectorCidr(cidr), `${formatIp(parsed.bytes)}/${len}`, cidr);
      t.equal(normalisedCidrText(parsed), normaliseCidr(cidr), `${cidr} normalised`);
    }
  }
  t.equal(normaliseCidr('10.244.1.7/24'), '10.244.1.0/24', 'host bits cleared');
  t.equal(normaliseCidr('10.244.1.0/24'), '10.244.1.0/24');
  for (const junk of ['010.0.0.1', '10.0.0.1/33', '10.0.0.1/024', '10.0.0', '1.2.3.4.5', '', 'fe80::1%eth0']) {
    t.equal(canonicalIp(junk), junk, `${junk} unchanged`);
    t.equal(canonicalSelectorCidr(junk), junk, `${junk} as a selector unchanged`);
  }
  for (const bad of ['010.0.0.1', '10.0.0', '1.2.3.4.5', '', 'x', '1::2::3']) t.notOk(isIpAddress(bad), bad);
  t.ok(isIpAddress('fd00::1'));
  t.end();
});

t.test('addresses parse to network-order bytes', (t) => {
  t.same([...parseIpStrict('10.244.1.7').bytes], [10, 244, 1, 7]);
  t.equal(parseIpStrict('fd00:10:244:1::5').bytes.toString('hex'), 'fd000010024400010000000000000005');
  t.equal(parseIpStrict('::').bytes.toString('hex'), '0'.repeat(32));
  t.equal(parseIpStrict('::ffff:192.0.2.1').bytes.toString('hex'), '00000000000000000000ffffc0000201');
  t.equal(parseIpStrict('2001:db8::1:2:3:4').bytes.toString('hex'), '20010db8000000000001000200030004');
  t.equal(parseIpStrict('1:2:3:4:5:6:7:8').bytes.toString('hex'), '00010002000300040005000600070008');
  t.throws(() => parseIpStrict('10.0.0.256'), /"10.0.0.256" is not an IPv4 or IPv6 address/);
  t.throws(() => parseIpStrict('fe80::1%eth0'), /is not an IPv4 or IPv6 address/);
  t.end();
});

t.test('CIDRs are validated with one-line errors naming them', (t) => {
  t.match(parseCidrStrict('10.244.1.0/24'), { family: 4, prefixLen: 24 });
  t.match(parseCidrStrict('fd00:1::/64'), { family: 6, prefixLen: 64 });
  t.match(parseCidrStrict('0.0.0.0/0'), { prefixLen: 0 });
  t.throws(() => parseCidrStrict('10.244.1.0'), /CIDR "10.244.1.0" has no \/prefix length/);
  t.throws(() => parseCidrStrict('10.244.1.0/33'), /prefix length outside 0..32/);
  t.throws(() => parseCidrStrict('fd00::/129'), /prefix length outside 0..128/);
  t.throws(() => parseCidrStrict('10.244.1.0/x'), /prefix length/);
  t.throws(() => parseCidrStrict('10.244.1.5/24'), /host bits set beyond \/24/);
  t.throws(() => parseCidrStrict('fd00::1/64'), /host bits set/);
  t.throws(() => parseCidrStrict('nope/8'), /does not start with an IPv4 or IPv6 address/);
  t.end();
});

/** CIDR texts both ways: networks, host bits, both families, and what is not a CIDR in many ways. */
const CIDR_TEXTS = [
  '10.244.1.0/24',
  '10.244.1.7/24',
  '0.0.0.0/0',
  '10.0.0.1/0',
  '192.0.2.7/32',
  'fd00::/8',
  'fd00::1/64',
  'FD00:10::/32',
  '::/0',
  '::1/128',
  '10.0.0.0',
  '10.0.0.0/33',
  '10.0.0.0/024',
  '10.0.0.0/',
  '::/129',
  'x/8',
  '10.0.0.0/-1',
  ' 10.0.0.0/8',
  '255.255.255.255/32',
  '128.0.0.0/1',
  '192.168.0.0/16',
  '::ffff:10.0.0.0/104',
  '010.0.0.0/8',
  '10.0.0.256/8',
  '10.0.0/8',
  '10.0.0.0.0/8',
  '10..0.0/8',
  '10.0.0.0/8 ',
  '',
];

t.test('strict and lenient CIDRs: same syntax; strict also refuses host bits and throws naming the text', (t) => {
  for (const text of CIDR_TEXTS) {
    const lenient = parseCidrLenient(text);
    let strict: ReturnType<typeof parseCidrStrict> | Error;
    try {
      strict = parseCidrStrict(text);
    } catch (err) {
      strict = err as Error;
    }
    const network = lenient !== undefined && normaliseCidr(text) === canonicalSelectorCidr(text);
    if (strict instanceof Error) {
      t.notOk(network, `${text}: strict refuses only what lenient refuses or what has host bits`);
      t.match(strict.message, `CIDR "${text}"`, `${text}: the error names the text`);
    } else {
      t.ok(network, `${text}: strict accepts a network`);
      t.same(strict, lenient, `${text}: both give the same value`);
    }
  }
  t.end();
});

t.test('readIpv4Cidr reads exactly the IPv4 CIDRs parseCidrLenient parses, to the same address and length', (t) => {
  for (const text of CIDR_TEXTS) {
    const out = { v4: -7, prefixLen: -7 };
    const read = readIpv4Cidr(text, out);
    const parsed = parseCidrLenient(text);
    if (parsed?.family === 4) {
      t.ok(read, `${text}: read`);
      const b = parsed.bytes;
      t.equal(out.v4, (b[0]! << 24) | (b[1]! << 16) | (b[2]! << 8) | b[3]! | 0, `${text}: the address`);
      t.equal(out.prefixLen, parsed.prefixLen, `${text}: the prefix length`);
    } else {
      t.notOk(read, `${text}: not an IPv4 CIDR`);
      t.same(out, { v4: -7, prefixLen: -7 }, `${text}: out left as it was`);
    }
  }
  t.end();
});

t.test('CIDRs: parse, normalise, selector form keeps host bits', (t) => {
  t.match(parseCidrLenient('10.244.1.0/24'), { family: 4, prefixLen: 24 });
  for (const bad of ['10.0.0.0', '10.0.0.0/33', '10.0.0.0/', '10.0.0.0/024', '::/129', 'x/8', '10.0.0.0/-1']) {
    t.equal(parseCidrLenient(bad), undefined, bad);
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
  const c = (s: string) => parseCidrLenient(s)!;
  t.ok(cidrsOverlap(c('10.0.0.0/8'), c('10.244.1.0/24')));
  t.ok(cidrsOverlap(c('10.244.1.0/24'), c('10.0.0.0/8')));
  t.ok(cidrsOverlap(c('10.244.1.0/24'), c('10.244.1.0/24')));
  t.notOk(cidrsOverlap(c('10.244.1.0/24'), c('10.244.2.0/24')));
  t.notOk(cidrsOverlap(c('10.244.1.0/25'), c('10.244.1.128/25')));
  t.ok(cidrsOverlap(c('0.0.0.0/0'), c('192.0.2.0/24')));
  t.notOk(cidrsOverlap(c('::/0'), c('10.0.0.0/8')));
  t.end();
});

t.test('normalisedCidrText: normaliseCidr of a parsed CIDR, leaving its bytes as they were', (t) => {
  for (const text of ['10.244.1.77/24', '10.244.1.0/24', '0.0.0.0/0', '1.2.3.4/32', 'fd00::1:2/64', 'FD00:0::1/127']) {
    const parsed = parseCidrLenient(text)!;
    const before = Buffer.from(parsed.bytes);
    t.equal(normalisedCidrText(parsed), normaliseCidr(text), text);
    t.same(Buffer.from(parsed.bytes), before, `${text}: bytes unchanged`);
  }
  t.end();
});

t.test('CIDR prefix lengths: "0" or 1-3 digits without a leading zero, within the family', (t) => {
  const spelled = /^(0|[1-9][0-9]{0,2})$/;
  for (const address of ['10.0.0.0', 'fd00::']) {
    const max = address.includes(':') ? 128 : 32;
    for (const len of [
      '0',
      '00',
      '08',
      '8',
      '32',
      '33',
      '100',
      '128',
      '129',
      '1000',
      '+8',
      '8 ',
      ' 8',
      '1e1',
      '٣',
      '',
    ]) {
      const text = `${address}/${len}`;
      const valid = spelled.test(len) && Number(len) <= max;
      t.equal(parseCidrLenient(text)?.prefixLen, valid ? Number(len) : undefined, JSON.stringify(text));
    }
  }
  t.end();
});

t.test('parsed bytes come from the shared buffer pool and are written whole, whatever the pool held', (t) => {
  const cases: [string, number[]][] = [
    ['0.0.0.0/0', [0, 0, 0, 0]],
    ['10.0.0.0/8', [10, 0, 0, 0]],
    ['::/0', new Array<number>(16).fill(0)],
    ['fd00::1:0/112', [0xfd, 0, ...new Array<number>(11).fill(0), 1, 0, 0]],
  ];
  for (const [text, bytes] of cases) {
    // The pool's unused room filled with ones: a byte the parser left unwritten would show as 0xff.
    const pool = Buffer.allocUnsafe(1).buffer;
    new Uint8Array(pool).fill(0xff);
    const cidr = parseCidrLenient(text);
    t.equal(cidr?.bytes.buffer, pool, `${text}: its bytes are a slice of the pool`);
    t.same([...(cidr?.bytes ?? [])], bytes, `${text}: every byte written`);
    const address = text.slice(0, text.indexOf('/'));
    const ip = parseIp(address);
    t.same([...(ip?.bytes ?? [])], bytes, `${address}: every byte written`);
  }
  t.end();
});
