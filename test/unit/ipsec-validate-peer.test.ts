import t from 'tap';
import { parseNodeInfo } from '../../src/ipsec/validate-peer.js';

const BOOT = '550e8400-e29b-41d4-a716-446655440000';

function obj(spec: Record<string, unknown>, name: unknown = 'node-b'): unknown {
  return {
    apiVersion: 'kmesh.net/v1alpha1',
    kind: 'KmeshNodeInfo',
    metadata: { name, namespace: 'kmesh-system' },
    spec: { spi: 1, addresses: ['172.18.0.3'], bootID: BOOT, podCIDRS: ['10.244.1.0/24'], ...spec },
    status: {},
  };
}

t.test('a good object becomes a NodeInfo (pod CIDRs normalised, addresses kept as published)', (t) => {
  t.same(
    parseNodeInfo(obj({ addresses: ['172.18.0.3', 'FD00::3'], podCIDRS: ['10.244.1.7/24', 'fd00:10:244:0001::/64'] })),
    {
      ok: {
        name: 'node-b',
        spi: 1,
        addresses: ['172.18.0.3', 'FD00::3'],
        bootID: BOOT,
        podCIDRs: ['10.244.1.0/24', 'fd00:10:244:1::/64'],
      },
    },
  );
  t.end();
});

const cases: [string, unknown, RegExp][] = [
  ['not an object', 'hello', /KmeshNodeInfo "\(unnamed\)": object/],
  ['no metadata.name', obj({}, ''), /"\(unnamed\)": metadata\.name is empty/],
  ['missing spec.spi', obj({ spi: undefined }), /"node-b": spec\.spi .*expected number/],
  ['SPI 0', obj({ spi: 0 }), /"node-b": spec\.spi must be at least 1/],
  ['negative SPI', obj({ spi: -3 }), /spec\.spi must be at least 1/],
  ['fractional SPI', obj({ spi: 1.5 }), /spec\.spi is not an integer/],
  ['SPI too big', obj({ spi: 2 ** 32 }), /spec\.spi must be at most 4294967295/],
  ['addresses not a list', obj({ addresses: '172.18.0.3' }), /spec\.addresses .*expected array/],
  ['no addresses', obj({ addresses: [] }), /spec\.addresses is empty/],
  [
    'bad IP',
    obj({ addresses: ['172.18.0.3', '300.1.1.1'] }),
    /spec\.addresses\[1\] "300\.1\.1\.1" is not an IP address/,
  ],
  ['IP with prefix', obj({ addresses: ['172.18.0.3/24'] }), /is not an IP address/],
  ['duplicate IP', obj({ addresses: ['172.18.0.3', '172.18.0.3'] }), /lists 172\.18\.0\.3 twice/],
  ['empty boot ID', obj({ bootID: '' }), /spec\.bootID is empty/],
  ['short boot ID', obj({ bootID: 'abc' }), /spec\.bootID "abc" is shorter than 36 characters/],
  ['boot ID wrong type', obj({ bootID: 5 }), /spec\.bootID .*expected string/],
  ['missing podCIDRS', obj({ podCIDRS: undefined }), /spec\.podCIDRS .*expected array/],
  ['empty podCIDRS', obj({ podCIDRS: [] }), /spec\.podCIDRS is empty/],
  ['bad CIDR', obj({ podCIDRS: ['10.244.1.0/33'] }), /spec\.podCIDRS\[0\] "10\.244\.1\.0\/33" is not a CIDR/],
  ['CIDR without prefix', obj({ podCIDRS: ['10.244.1.0'] }), /is not a CIDR/],
  [
    'an address not a string',
    obj({ addresses: ['172.18.0.3', 7] }),
    /spec\.addresses\[1\] expected string, received number/,
  ],
  ['a CIDR not a string', obj({ podCIDRS: [null] }), /spec\.podCIDRS\[0\] expected string, received null/],
  ['SPI NaN', obj({ spi: Number.NaN }), /spec\.spi expected number, received NaN/],
  ['SPI infinite', obj({ spi: Number.POSITIVE_INFINITY }), /spec\.spi expected number/],
  ['SPI a numeric string', obj({ spi: '1' }), /spec\.spi expected number, received string/],
  ['metadata not an object', { metadata: [], spec: {} }, /"\(unnamed\)": metadata expected object, received array/],
  [
    'metadata.name not a string',
    { metadata: { name: 5 }, spec: {} },
    /metadata\.name expected string, received number/,
  ],
  ['spec missing', { metadata: { name: 'n' } }, /"n": spec expected object, received undefined/],
  ['an array, not an object', [], /"\(unnamed\)": object expected, received array/],
];

t.test('bad objects give one-line reasons naming the field', (t) => {
  for (const [label, input, reason] of cases) {
    const result = parseNodeInfo(input);
    if ('ok' in result) {
      t.fail(`${label}: accepted`);
      continue;
    }
    t.match(result.error, reason, label);
    t.notOk(result.error.includes('\n'), `${label}: one line`);
  }
  t.end();
});

t.test('the first bad field is named: metadata before spec, the spec fields in order', (t) => {
  const both = { metadata: { name: '' }, spec: { spi: 0, addresses: [], bootID: 1, podCIDRS: [] } };
  t.match(parseNodeInfo(both), { error: /metadata\.name is empty$/ });
  t.match(parseNodeInfo(obj({ spi: 0, addresses: [] })), { error: /spec\.spi must be at least 1$/ });
  t.match(parseNodeInfo(obj({ addresses: [], bootID: 1 })), { error: /spec\.addresses is empty$/ });
  t.match(parseNodeInfo(obj({ bootID: 1, podCIDRS: [] })), { error: /spec\.bootID expected string, received number$/ });
  t.end();
});

t.test('never throws on junk', (t) => {
  for (const junk of [null, undefined, 42, [], { spec: null }, { metadata: 5, spec: {} }]) {
    t.ok('error' in parseNodeInfo(junk));
  }
  t.end();
});
