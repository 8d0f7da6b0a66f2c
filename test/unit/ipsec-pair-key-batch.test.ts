import t from 'tap';
import { derivePairKey, type KeyEndpoint } from '../../src/keys/derive.js';
import { pendingPairKeys, requestPairKey, settlePairKeys } from '../../src/ipsec/pair-key-batch.js';
import { loadAddon } from '../../src/native/addon.js';

const PSK = Buffer.from('2dc9410d7cd6b324461bf16db518646594276c5362c30fc476ebca3f1a394b6ed4462161', 'hex');
const BOOT_A = '550e8400-e29b-41d4-a716-446655440000';
const BOOT_B = '550e8400-e29b-41d4-a716-446655440001';

t.test('the Kmesh test vector through the batch', (t) => {
  const key = requestPairKey(PSK, { ip: '172.18.0.2', bootID: BOOT_A }, { ip: '172.18.0.3', bootID: BOOT_B });
  t.equal(pendingPairKeys(), 1, 'asked for, not derived yet');
  settlePairKeys();
  t.equal(pendingPairKeys(), 0);
  t.equal(key.toString('hex'), '23c6445db18e51646058b124a5e11c9066fa100ed51094ac264f1f81ed1f38b0981b8767');
  t.end();
});

t.test('every key of a batch equals derivePairKey: PSKs, boot IDs cut inside characters, IPv6, long texts', (t) => {
  const bootIDs = [
    BOOT_A,
    'x',
    `${'a'.repeat(34)}€tail`, // the 36-byte cut falls inside the euro sign
    `${'a'.repeat(35)}ü`,
    `${'a'.repeat(33)}€`,
    '€'.repeat(20),
    '🙂'.repeat(3),
    `${BOOT_B}-and-more-than-36-bytes`,
    'b'.repeat(20000),
    'x\ny',
  ];
  const ips = ['198.18.0.1', 'fd00:1234::1', 'fd00:0::1', '10.0.0.2', '1'.repeat(5000)];
  const psks = [PSK, Buffer.alloc(1, 7), Buffer.alloc(2000, 0xab), Buffer.alloc(36, 0x5a)];
  const asked: { key: Buffer; psk: Buffer; src: KeyEndpoint; dst: KeyEndpoint }[] = [];
  // Interleaved as a rotation's plan asks: several PSKs and many endpoints in one batch, more than a slab's keys.
  for (const a of bootIDs)
    for (const b of bootIDs)
      for (let i = 0; i < ips.length; i++) {
        const src = { ip: ips[i] as string, bootID: a };
        const dst = { ip: ips[(i + 1) % ips.length] as string, bootID: b };
        const psk = psks[(asked.length * 7) % psks.length] as Buffer;
        asked.push({ key: requestPairKey(psk, src, dst), psk, src, dst });
      }
  t.ok(pendingPairKeys() <= 256, 'a full slab was derived as soon as it filled');
  settlePairKeys();
  let differ = 0;
  for (const a of asked) if (!a.key.equals(derivePairKey(a.psk, a.src, a.dst))) differ++;
  t.equal(differ, 0, `${asked.length} keys compared`);
  t.ok(
    asked.every((a) => a.key.length === 36 && a.key.buffer.byteLength >= 36 * 256),
    'each key is 36 bytes of a shared slab',
  );
  t.ok(new Set(asked.map((a) => a.key.buffer)).size <= Math.ceil(asked.length / 256) + 1, 'slabs of 256 keys');
  t.end();
});

t.test('endpoints laid out once are not mistaken for others: any order of requests gives the plain keys', (t) => {
  const ends = [
    { ip: '198.18.0.1', bootID: BOOT_A },
    { ip: '198.18.0.1', bootID: BOOT_B },
    { ip: '198.18.0.2', bootID: BOOT_A },
    { ip: '198.18.0.12', bootID: 'é'.repeat(20) },
  ];
  const pairs: [number, number][] = [];
  for (let i = 0; i < ends.length; i++) for (let j = 0; j < ends.length; j++) if (i !== j) pairs.push([i, j]);
  for (const order of [pairs, [...pairs].reverse()]) {
    const keys = order.map(([i, j]) => requestPairKey(PSK, ends[i]!, ends[j]!));
    settlePairKeys();
    order.forEach(([i, j], k) => t.same(keys[k], derivePairKey(PSK, ends[i]!, ends[j]!), `${i} -> ${j}`));
  }
  t.end();
});

t.test('empty inputs are refused when asked for, and nothing is left pending', (t) => {
  settlePairKeys();
  const ok = { ip: '10.0.0.1', bootID: BOOT_A };
  t.throws(() => requestPairKey(Buffer.alloc(0), ok, ok), /pre-shared key is empty/);
  t.throws(() => requestPairKey(PSK, { ip: '', bootID: BOOT_A }, ok), /source IP is empty/);
  t.throws(() => requestPairKey(PSK, ok, { ip: '10.0.0.2', bootID: '' }), /boot ID of 10\.0\.0\.2 is empty/);
  t.equal(pendingPairKeys(), 0);
  t.end();
});

t.test(
  'the addon refuses requests that point outside their arrays, and endpoints that are not IP/boot ID texts',
  (t) => {
    const { pairKeys } = loadAddon() as {
      pairKeys: { derive: (...args: unknown[]) => void };
    };
    const endpoints = ['10.0.0.1', 'a', '10.0.0.2', 'b'];
    const out = Buffer.alloc(72);
    pairKeys.derive([PSK], endpoints, Uint32Array.of(0, 0, 1, 0, 0, 1, 0, 36), 2, out);
    t.same(out.subarray(0, 36), derivePairKey(PSK, { ip: '10.0.0.1', bootID: 'a' }, { ip: '10.0.0.2', bootID: 'b' }));
    t.same(out.subarray(36), derivePairKey(PSK, { ip: '10.0.0.2', bootID: 'b' }, { ip: '10.0.0.1', bootID: 'a' }));
    const bad: [string, unknown[]][] = [
      ['a PSK index', [[PSK], endpoints, Uint32Array.of(1, 0, 1, 0), 1, out]],
      ['an endpoint index', [[PSK], endpoints, Uint32Array.of(0, 0, 2, 0), 1, out]],
      ['a key past the end of out', [[PSK], endpoints, Uint32Array.of(0, 0, 1, 40), 1, out]],
      ['a count past the requests', [[PSK], endpoints, Uint32Array.of(0, 0, 1, 0), 2, out]],
    ];
    for (const [what, args] of bad) t.throws(() => pairKeys.derive(...args), RangeError, what);
    const wrong: [string, unknown[]][] = [
      ['requests not Uint32', [[PSK], endpoints, Int32Array.of(0, 0, 1, 0), 1, out]],
      ['a PSK not a Buffer', [['not a buffer'], endpoints, Uint32Array.of(0, 0, 1, 0), 1, out]],
      ['an endpoint without its boot ID', [[PSK], ['10.0.0.1', 'a', '10.0.0.2'], Uint32Array.of(0, 0, 1, 0), 1, out]],
      ['an endpoint text not a string', [[PSK], ['10.0.0.1', 'a', '10.0.0.2', 7], Uint32Array.of(0, 0, 1, 0), 1, out]],
      [
        'the old layout (material and endpoint ranges)',
        [[PSK], Buffer.from('x'), Uint32Array.of(0), Uint32Array.of(0, 0, 0, 0), 1, out],
      ],
    ];
    for (const [what, args] of wrong) t.throws(() => pairKeys.derive(...args), TypeError, what);
    t.end();
  },
);

t.test('a batch that fails when its slab fills: the request fails, and so does the next settle', (t) => {
  settlePairKeys();
  const { pairKeys } = loadAddon() as { pairKeys: { derive: (...args: unknown[]) => void } };
  const derive = pairKeys.derive;
  pairKeys.derive = () => {
    throw new Error('derivation failed (test)');
  };
  const local = { ip: '198.18.0.1', bootID: BOOT_A };
  let thrown: unknown;
  try {
    for (let i = 0; i < 600 && thrown === undefined; i++) {
      try {
        requestPairKey(PSK, local, { ip: `198.18.1.${i % 250}`, bootID: `b${i}` });
      } catch (e) {
        thrown = e;
      }
    }
  } finally {
    pairKeys.derive = derive;
  }
  t.match(String(thrown), /derivation failed \(test\)/, 'the request that found its slab full failed');
  // Whoever asked for keys before that learns of it when settling, even though nothing is pending now.
  t.throws(() => settlePairKeys(), /derivation failed \(test\)/);
  t.equal(pendingPairKeys(), 0);
  t.doesNotThrow(() => settlePairKeys(), 'the failure is reported once');
  const key = requestPairKey(PSK, local, { ip: '198.18.2.1', bootID: 'c' });
  settlePairKeys();
  t.same(key, derivePairKey(PSK, local, { ip: '198.18.2.1', bootID: 'c' }), 'later batches derive as before');
  t.end();
});
