import t from 'tap';
import {
  AEAD_KEY_NAME,
  decodeIpsecPayload,
  encodeIpsecPayload,
  ICV_BITS,
  IpsecPayloadError,
  salvageSpi,
} from '../../src/secret/payload.js';

const SPEC_KEY = Buffer.from('2dc9410d7cd6b324461bf16db518646594276c5362c30fc476ebca3f1a394b6ed4462161', 'hex');
const SPEC_PAYLOAD =
  '{"spi":1,"aeadKeyName":"rfc4106(gcm(aes))","aeadKey":"LclBDXzWsyRGG/FttRhkZZQnbFNiww/EduvKPxo5S27URiFh","length":128}';

t.test('encoding matches the documented Kmesh example byte for byte (field order, padded base64)', (t) => {
  const text = encodeIpsecPayload({ spi: 1, aeadKeyName: AEAD_KEY_NAME, key: SPEC_KEY, icvBits: ICV_BITS });
  t.equal(text, SPEC_PAYLOAD);
  t.same(Buffer.from(text), Buffer.from(SPEC_PAYLOAD, 'utf8'));
  t.end();
});

t.test('decoding the documented Kmesh example gives the key back, from text or bytes', (t) => {
  const key = decodeIpsecPayload(SPEC_PAYLOAD);
  t.equal(key.spi, 1);
  t.equal(key.aeadKeyName, 'rfc4106(gcm(aes))');
  t.same(key.key, SPEC_KEY);
  t.equal(key.icvBits, 128);
  t.same(decodeIpsecPayload(Buffer.from(SPEC_PAYLOAD)), key);
  t.same(decodeIpsecPayload(new Uint8Array(Buffer.from(` ${SPEC_PAYLOAD}\n`))), key);
  t.end();
});

t.test('encode then decode is the identity for any SPI', (t) => {
  for (const spi of [1, 2, 255, 0xffffffff]) {
    const key = { spi, aeadKeyName: AEAD_KEY_NAME, key: Buffer.alloc(36, spi & 0xff), icvBits: 128 };
    t.same(decodeIpsecPayload(encodeIpsecPayload(key)), key);
  }
  t.end();
});

t.test('malformed payloads are refused with a precise reason that never shows the key', (t) => {
  const valid = JSON.parse(SPEC_PAYLOAD) as Record<string, unknown>;
  const variant = (patch: Record<string, unknown>) => JSON.stringify({ ...valid, ...patch });
  const without = (field: string) => JSON.stringify({ ...valid, [field]: undefined });
  const cases: [string, RegExp][] = [
    ['', /^payload is empty$/],
    ['{"spi":1', /^payload is not JSON$/],
    ['[1,2]', /^payload is not a JSON object$/],
    ['null', /^payload is not a JSON object$/],
    [without('spi'), /^spi is missing$/],
    [variant({ spi: 0 }), /^spi must be at least 1$/],
    [variant({ spi: 1.5 }), /^spi must be an integer$/],
    [variant({ spi: '1' }), /^spi must be a number$/],
    [variant({ spi: 2 ** 32 }), /^spi must be at most 4294967295$/],
    [
      variant({ aeadKeyName: 'cbc(aes)' }),
      /^aeadKeyName must be "rfc4106\(gcm\(aes\)\)", the only supported algorithm$/,
    ],
    [without('aeadKeyName'), /^aeadKeyName is missing$/],
    [variant({ aeadKey: SPEC_KEY.toString('hex') }), /^aeadKey decodes to 54 bytes, need 36$/],
    [variant({ aeadKey: 'not base64!' }), /^aeadKey is not valid padded base64$/],
    [variant({ aeadKey: SPEC_KEY.subarray(0, 32).toString('base64') }), /^aeadKey decodes to 32 bytes, need 36$/],
    [variant({ aeadKey: 42 }), /^aeadKey must be a base64 string$/],
    [variant({ length: 96 }), /^length must be 128 \(ICV bits\)$/],
    [without('length'), /^length is missing$/],
    [
      JSON.stringify({ spi: 0, aeadKeyName: 'x' }),
      /^spi must be at least 1; aeadKeyName must be .*; aeadKey is missing; length is missing$/,
    ],
  ];
  for (const [input, message] of cases) {
    t.throws(() => decodeIpsecPayload(input), { name: 'IpsecPayloadError', message }, input);
    try {
      decodeIpsecPayload(input);
    } catch (err) {
      t.type(err, IpsecPayloadError);
      t.notMatch((err as Error).message, /LclBDXzW|2dc9410d/, 'no key material in the message');
    }
  }
  t.end();
});

t.test('salvageSpi recovers a usable SPI from an otherwise broken payload', (t) => {
  t.equal(salvageSpi('{"spi":7,"aeadKey":"short"}'), 7);
  t.equal(salvageSpi('{"spi":0}'), undefined);
  t.equal(salvageSpi('{"spi":"7"}'), undefined);
  t.equal(salvageSpi('not json'), undefined);
  t.equal(salvageSpi('null'), undefined);
  t.end();
});
