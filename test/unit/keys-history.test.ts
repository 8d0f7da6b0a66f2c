import t from 'tap';
import { KeyHistory } from '../../src/keys/key-history.js';
import type { IpsecKey } from '../../src/model/node.js';

function key(spi: number, fill = spi): IpsecKey {
  return { spi, aeadKeyName: 'rfc4106(gcm(aes))', key: Buffer.alloc(36, fill), icvBits: 128 };
}

t.test('keys by SPI, current = highest SPI, ascending listing', (t) => {
  const h = KeyHistory.of([key(2), key(1), key(5)]);
  t.same(h.spis(), [1, 2, 5]);
  t.equal(h.current()?.spi, 5);
  t.equal(h.size, 3);
  t.ok(h.has(2));
  t.notOk(h.has(3));
  t.equal(h.get(1)?.key.toString('hex'), '01'.repeat(36));
  t.equal(KeyHistory.empty().current(), undefined);
  t.end();
});

t.test('same SPI with a different PSK is refused; re-adding the same key is a no-op', (t) => {
  const h = KeyHistory.of([key(1)]);
  t.equal(h.with(key(1)), h, 'identical key returns the same history');
  t.throws(() => h.with(key(1, 0xaa)), /SPI 1 is already in use with a different key/);
  t.same(h.spis(), [1], 'history unchanged after a refusal');
  t.end();
});

t.test('immutable: with/without return new histories and do not share key buffers', (t) => {
  const k = key(1);
  const h1 = KeyHistory.empty().with(k);
  k.key.fill(0xff);
  t.equal(h1.get(1)?.key[0], 1, 'caller mutating its buffer does not change the history');
  const h2 = h1.with(key(2));
  t.same(h1.spis(), [1]);
  t.same(h2.spis(), [1, 2]);
  t.same(h2.without([1]).spis(), [2]);
  t.equal(h2.without([7]), h2);
  t.end();
});

t.test('pruning keeps the newest keys', (t) => {
  const h = KeyHistory.of([key(1), key(2), key(3), key(4)]);
  t.same(h.keepNewest(2).spis(), [3, 4]);
  t.same(h.keepNewest(10).spis(), [1, 2, 3, 4]);
  t.same(h.keepNewest(0).spis(), []);
  t.end();
});

t.test('invalid keys are refused with one-line errors', (t) => {
  t.throws(() => KeyHistory.of([key(0)]), /SPI 0 is not an integer/);
  t.throws(() => KeyHistory.of([{ ...key(1), spi: 1.5 }]), /SPI 1.5/);
  t.throws(() => KeyHistory.of([{ ...key(1), aeadKeyName: 'cbc(aes)' }]), /not supported/);
  t.throws(() => KeyHistory.of([{ ...key(1), key: Buffer.alloc(32) }]), /must be 36 bytes, got 32/);
  t.throws(() => KeyHistory.of([{ ...key(1), icvBits: 100 }]), /ICV length 100 bits is not 128/);
  t.throws(() => KeyHistory.of([{ ...key(1), icvBits: 96 }]), /ICV length 96 bits is not 128/);
  t.end();
});

t.test('JSON round trip (key bytes as base64), also through text', (t) => {
  const h = KeyHistory.of([key(1), key(3, 0x5a)]);
  const json = h.toJSON();
  t.equal(json.version, 1);
  t.same(json.keys[1], {
    spi: 3,
    aeadKeyName: 'rfc4106(gcm(aes))',
    aeadKey: Buffer.alloc(36, 0x5a).toString('base64'),
    length: 128,
  });
  const back = KeyHistory.fromJSON(JSON.parse(JSON.stringify(h)));
  t.same(back.spis(), [1, 3]);
  t.ok(back.get(3)?.key.equals(Buffer.alloc(36, 0x5a)));
  t.same(KeyHistory.fromJSON(JSON.stringify(h)).spis(), [1, 3]);
  t.end();
});

t.test('fromJSON names what is wrong', (t) => {
  const good = KeyHistory.of([key(1)]).toJSON();
  t.throws(() => KeyHistory.fromJSON('{nope'), /key history: not JSON/);
  t.throws(() => KeyHistory.fromJSON(null), /expected an object/);
  t.throws(() => KeyHistory.fromJSON({ keys: [] }), /unsupported version \(missing\)/);
  t.throws(() => KeyHistory.fromJSON({ version: 1, keys: {} }), /"keys" must be an array/);
  t.throws(() => KeyHistory.fromJSON({ version: 1, keys: [5] }), /keys\[0\] is not an object/);
  t.throws(
    () => KeyHistory.fromJSON({ version: 1, keys: [{ ...good.keys[0], spi: '1' }] }),
    /keys\[0\]\.spi is not a number/,
  );
  t.throws(
    () => KeyHistory.fromJSON({ version: 1, keys: [{ ...good.keys[0], aeadKey: 'zz!' }] }),
    /aeadKey is not standard base64/,
  );
  t.throws(
    () => KeyHistory.fromJSON({ version: 1, keys: [{ ...good.keys[0], aeadKey: 'AAAA' }] }),
    /must be 36 bytes, got 3/,
  );
  t.throws(
    () =>
      KeyHistory.fromJSON({
        version: 1,
        keys: [good.keys[0], { ...good.keys[0], aeadKey: Buffer.alloc(36, 9).toString('base64') }],
      }),
    /already in use with a different key/,
  );
  t.end();
});
