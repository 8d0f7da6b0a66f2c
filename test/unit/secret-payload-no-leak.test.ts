// No part of a key reaches an error message: a Secret holding the bare key (hex or base64, an easy mistake with
// `kubectl create secret --from-literal`) or JSON broken inside the key is reported without quoting it.
import t from 'tap';
import { decodeIpsecPayload, IpsecPayloadError } from '../../src/secret/payload.js';

const HEX = '2dc9410d7cd6b324461bf16db518646594276c5362c30fc476ebca3f1a394b6ed4462161';
const B64 = 'LclBDXzWsyRGG/FttRhkZZQnbFNiww/EduvKPxo5S27URiFh';

function message(payload: string): string {
  try {
    decodeIpsecPayload(payload);
  } catch (err) {
    if (err instanceof IpsecPayloadError) return err.message;
    throw err;
  }
  throw new Error('decoded');
}

/** Every run of 4 characters of `secret` that appears in `text`. */
function fragments(text: string, secret: string): string[] {
  const out: string[] = [];
  for (let i = 0; i + 4 <= secret.length; i++)
    if (text.includes(secret.slice(i, i + 4))) out.push(secret.slice(i, i + 4));
  return out;
}

t.test('a bare key is named as such and never quoted', (t) => {
  for (const [what, payload] of [
    ['hex', HEX],
    ['base64', B64],
    ['base64 with a newline', `${B64}\n`],
  ] as const) {
    const m = message(payload);
    t.match(m, /^payload is not JSON: it looks like a bare key \(hex or base64\)/, what);
    t.same(fragments(m, payload.trim()), [], `${what}: no fragment of the key in "${m}"`);
  }
  t.end();
});

t.test('broken JSON around a key is reported without its text', (t) => {
  const payload = `{"spi":1,"aeadKeyName":"rfc4106(gcm(aes))","aeadKey":"${B64}" "length":128}`;
  const m = message(payload);
  t.equal(m, 'payload is not JSON');
  t.same(fragments(m, B64), []);
  t.end();
});
