import t from 'tap';
import { advertisedSpi, nextSpi, SpiExhaustedError } from '../../src/secret/rotation.js';

t.test('the first SPI on a fresh cluster is 1; each rotation adds one', (t) => {
  t.equal(nextSpi(undefined, []), 1);
  t.equal(nextSpi(1, []), 2);
  t.equal(nextSpi(41, [41, 40]), 42);
  t.end();
});

t.test('after a delete the next SPI goes above every SPI nodes still advertise', (t) => {
  t.equal(nextSpi(undefined, [3, 5, 4]), 6);
  t.equal(nextSpi(2, [9]), 10);
  t.end();
});

t.test('the 32-bit SPI space has an end', (t) => {
  t.equal(nextSpi(0xfffffffe, []), 0xffffffff);
  t.throws(() => nextSpi(0xffffffff, []), SpiExhaustedError);
  t.throws(() => nextSpi(1, [0xffffffff]), { message: /highest SPI in use is 4294967295/ });
  t.end();
});

t.test('a KmeshNodeInfo takes spec.spi and status.highestSpi only when they are valid SPIs', (t) => {
  t.same(advertisedSpi({ spec: { spi: 3 } }), [3]);
  t.same(
    advertisedSpi({ spec: { spi: 1 }, status: { heldSpis: [1, 2], highestSpi: 2 } }),
    [1, 2],
    'a node holding SPI 2 it has not advertised yet: 2 is taken too',
  );
  t.same(advertisedSpi({ spec: { spi: 1 }, status: { highestSpi: 0 } }), [1], 'highestSpi 0: holds nothing');
  t.same(nextSpi(undefined, advertisedSpi({ spec: { spi: 1 }, status: { highestSpi: 2 } })), 3);
  for (const bad of [
    null,
    'x',
    {},
    { spec: null },
    { spec: { spi: '3' } },
    { spec: { spi: 0 } },
    { spec: { spi: 1.5 } },
  ]) {
    t.same(advertisedSpi(bad), [], JSON.stringify(bad));
  }
  t.end();
});
