import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import t from 'tap';
import { InvalidKeyError, KEY_BYTES, parseHexKey } from '../../src/secret/key-hex.js';

const SPEC_HEX = '2dc9410d7cd6b324461bf16db518646594276c5362c30fc476ebca3f1a394b6ed4462161';

t.test('a 72-digit hex key decodes to its 36 bytes, in either case', (t) => {
  const key = parseHexKey(SPEC_HEX);
  t.equal(key.length, KEY_BYTES);
  t.equal(key.toString('hex'), SPEC_HEX);
  t.same(parseHexKey(SPEC_HEX.toUpperCase()), key);
  t.end();
});

t.test('whitespace around and line breaks inside the value are ignored (xxd wraps its output)', (t) => {
  const wrapped = `  ${SPEC_HEX.slice(0, 60)}\n${SPEC_HEX.slice(60)}\r\n`;
  t.equal(parseHexKey(wrapped).toString('hex'), SPEC_HEX);
  t.equal(parseHexKey(`\t${SPEC_HEX.slice(0, 8)} ${SPEC_HEX.slice(8)}\n`).toString('hex'), SPEC_HEX);
  t.end();
});

t.test(
  'the documented recipe `echo -n KEY | xxd -p -c 64` produces an accepted key',
  { skip: !fs.existsSync('/usr/bin/xxd') && 'xxd not installed' },
  (t) => {
    const typed = 'my-own-36-character-key-for-ipsec!!!';
    t.equal(typed.length, 36);
    const hex = execFileSync('xxd', ['-p', '-c', '64'], { input: typed }).toString();
    t.same(parseHexKey(hex), Buffer.from(typed));
    // Older xxd caps -p output at 30 bytes a line, so the same key can arrive wrapped.
    const narrow = execFileSync('xxd', ['-p', '-c', '30'], { input: typed }).toString();
    t.match(narrow.trim(), /\n/);
    t.same(parseHexKey(narrow), Buffer.from(typed));
    t.end();
  },
);

t.test('each bad key gets an error naming the problem', (t) => {
  const cases: [string, RegExp][] = [
    ['', /^key is empty: give 72 hex digits \(36 bytes\), or omit --key$/],
    [' \n\t ', /^key is empty/],
    [SPEC_HEX.slice(0, 4) + 'g' + SPEC_HEX.slice(5), /^key is not hex: character 'g' at position 5 is not a hex digit/],
    [`0x${SPEC_HEX}`, /character 'x' at position 2/],
    [SPEC_HEX.slice(0, 10) + '\u0000' + SPEC_HEX.slice(10), /character U\+0000 at position 11/],
    [SPEC_HEX.slice(1), /^key has an odd number of hex digits \(71\): every byte takes two digits$/],
    [SPEC_HEX.slice(2), /^key is 35 bytes \(70 hex digits\), need 36 bytes \(72 hex digits\)/],
    [SPEC_HEX + '00', /^key is 37 bytes \(74 hex digits\), need 36 bytes/],
    ['abcd', /^key is 2 bytes/],
  ];
  for (const [input, message] of cases) {
    t.throws(() => parseHexKey(input), { name: 'InvalidKeyError', message }, JSON.stringify(input));
  }
  t.type(
    (() => {
      try {
        parseHexKey('zz');
      } catch (err) {
        return err;
      }
      return undefined;
    })(),
    InvalidKeyError,
  );
  t.end();
});
