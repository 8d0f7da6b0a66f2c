// One set of key invariants (src/model/ipsec-key.ts) for every reader of keys: the Secret's payload decoder,
// the key history, and the XFRM codec's SPI range must accept and refuse exactly the same key versions.
import t from 'tap';
import { KeyHistory } from '../../src/keys/key-history.js';
import {
  AEAD_KEY_BYTES,
  AEAD_KEY_NAME,
  ICV_BITS,
  ipsecKeyProblem,
  isValidSpi,
  SPI_MAX,
} from '../../src/model/ipsec-key.js';
import type { IpsecKey } from '../../src/model/node.js';
import { decodeIpsecPayload, encodeIpsecPayload } from '../../src/secret/payload.js';
import { encodeState } from '../../src/xfrm/netlink-codec.js';
import { makeOutboundSa } from '../fakes/xfrm-objects.js';

const good: IpsecKey = { spi: 7, aeadKeyName: AEAD_KEY_NAME, key: Buffer.alloc(AEAD_KEY_BYTES, 7), icvBits: ICV_BITS };

const candidates: [string, IpsecKey][] = [
  ['a Kmesh key', good],
  ['SPI 1', { ...good, spi: 1 }],
  ['the largest SPI', { ...good, spi: SPI_MAX }],
  ['SPI 0', { ...good, spi: 0 }],
  ['SPI 2^32', { ...good, spi: SPI_MAX + 1 }],
  ['a fractional SPI', { ...good, spi: 1.5 }],
  ['a negative SPI', { ...good, spi: -1 }],
  ['another AEAD', { ...good, aeadKeyName: 'gcm(aes)' }],
  ['a 35-byte key', { ...good, key: Buffer.alloc(35, 1) }],
  ['a 37-byte key', { ...good, key: Buffer.alloc(37, 1) }],
  ['an AES-128 rfc4106 key (20 bytes)', { ...good, key: Buffer.alloc(20, 1) }],
  ['ICV 96', { ...good, icvBits: 96 }],
  ['ICV 64', { ...good, icvBits: 64 }],
  ['ICV 0', { ...good, icvBits: 0 }],
];

function accepts(fn: () => unknown): boolean {
  try {
    fn();
    return true;
  } catch {
    return false;
  }
}

t.test('payload decoding and the key history accept exactly the keys the model accepts', (t) => {
  for (const [what, key] of candidates) {
    const valid = ipsecKeyProblem(key) === undefined;
    t.equal(
      accepts(() => decodeIpsecPayload(encodeIpsecPayload(key))),
      valid,
      `payload: ${what}`,
    );
    t.equal(
      accepts(() => KeyHistory.of([key])),
      valid,
      `key history: ${what}`,
    );
  }
  t.ok(
    candidates.some(([, k]) => ipsecKeyProblem(k) === undefined) &&
      candidates.some(([, k]) => ipsecKeyProblem(k) !== undefined),
    'the table holds keys on both sides',
  );
  t.end();
});

t.test('the codec takes exactly the SPIs a key may have', (t) => {
  for (const spi of [0, 1, 2, 0x7fffffff, SPI_MAX, SPI_MAX + 1, 1.5, -1]) {
    t.equal(
      accepts(() => encodeState('add', makeOutboundSa({ spi }), 1)),
      isValidSpi(spi),
      `SPI ${spi}`,
    );
  }
  t.end();
});

t.test('problems are one line and never quote key bytes', (t) => {
  for (const [what, key] of candidates) {
    const problem = ipsecKeyProblem(key);
    if (problem === undefined) continue;
    t.notMatch(problem, /\n/, `${what}: one line`);
    t.notOk(
      problem.includes(key.key.toString('hex')) || problem.includes(key.key.toString('base64')),
      `${what}: no key`,
    );
  }
  t.end();
});
