import t from 'tap';
import { createHash } from 'node:crypto';
import { bootIdBytes, derivePairKey } from '../../src/keys/derive.js';

const PSK = Buffer.from('2dc9410d7cd6b324461bf16db518646594276c5362c30fc476ebca3f1a394b6ed4462161', 'hex');
const BOOT_A = '550e8400-e29b-41d4-a716-446655440000';
const BOOT_B = '550e8400-e29b-41d4-a716-446655440001';

t.test('Kmesh test vector: K(172.18.0.2 -> 172.18.0.3)', (t) => {
  const key = derivePairKey(PSK, { ip: '172.18.0.2', bootID: BOOT_A }, { ip: '172.18.0.3', bootID: BOOT_B });
  t.equal(key.toString('hex'), '23c6445db18e51646058b124a5e11c9066fa100ed51094ac264f1f81ed1f38b0981b8767');
  t.equal(key.length, 36);
  t.end();
});

t.test('direction matters: K(a->b) != K(b->a)', (t) => {
  const ab = derivePairKey(PSK, { ip: '172.18.0.2', bootID: BOOT_A }, { ip: '172.18.0.3', bootID: BOOT_B });
  const ba = derivePairKey(PSK, { ip: '172.18.0.3', bootID: BOOT_B }, { ip: '172.18.0.2', bootID: BOOT_A });
  t.not(ab.toString('hex'), ba.toString('hex'));
  t.end();
});

t.test('boot IDs: at most 36 bytes enter the hash; shorter ones are used whole', (t) => {
  const long = derivePairKey(PSK, { ip: '10.0.0.1', bootID: `${BOOT_A}-extra` }, { ip: '10.0.0.2', bootID: BOOT_B });
  const exact = derivePairKey(PSK, { ip: '10.0.0.1', bootID: BOOT_A }, { ip: '10.0.0.2', bootID: BOOT_B });
  t.same(long, exact, 'bytes beyond 36 are ignored');
  t.equal(bootIdBytes('abc').toString(), 'abc');
  const short = derivePairKey(PSK, { ip: '10.0.0.1', bootID: 'abc' }, { ip: '10.0.0.2', bootID: 'd' });
  const expected = createHash('sha512')
    .update(Buffer.concat([PSK, Buffer.from('10.0.0.110.0.0.2abcd')]))
    .digest();
  t.same(short, expected.subarray(0, 36), 'short boot IDs do not crash and hash as given');
  t.end();
});

t.test('IPs are hashed as published text (IPv6 spelling matters)', (t) => {
  const a = derivePairKey(PSK, { ip: 'fd00::1', bootID: BOOT_A }, { ip: 'fd00::2', bootID: BOOT_B });
  const b = derivePairKey(PSK, { ip: 'fd00:0::1', bootID: BOOT_A }, { ip: 'fd00::2', bootID: BOOT_B });
  t.not(a.toString('hex'), b.toString('hex'));
  t.end();
});

t.test('empty inputs are refused with a clear error', (t) => {
  const ok = { ip: '10.0.0.1', bootID: BOOT_A };
  t.throws(() => derivePairKey(Buffer.alloc(0), ok, ok), /pre-shared key is empty/);
  t.throws(() => derivePairKey(PSK, { ip: '', bootID: BOOT_A }, ok), /source IP is empty/);
  t.throws(() => derivePairKey(PSK, ok, { ip: '10.0.0.2', bootID: '' }), /boot ID of 10\.0\.0\.2 is empty/);
  t.end();
});

t.test(
  'derivePairKey gives what the definition hashed piece by piece gives, whatever the boot IDs and PSK hold',
  (t) => {
    // The definition, hashed piece by piece as SPEC.md states it.
    const reference = (psk: Buffer, src: { ip: string; bootID: string }, dst: { ip: string; bootID: string }): Buffer =>
      createHash('sha512')
        .update(psk)
        .update(src.ip, 'utf8')
        .update(dst.ip, 'utf8')
        .update(Buffer.from(src.bootID, 'utf8').subarray(0, 36))
        .update(Buffer.from(dst.bootID, 'utf8').subarray(0, 36))
        .digest()
        .subarray(0, 36);
    const bootIDs = [
      BOOT_A,
      'x',
      `${'a'.repeat(34)}€tail`, // the 36-byte cut falls inside the euro sign
      `${'a'.repeat(35)}ü`, // ... inside a two-byte character
      `${'a'.repeat(33)}€`, // a three-byte character ends exactly at 36
      '€'.repeat(20),
      `${BOOT_B}-and-more-than-36-bytes`,
      '🙂'.repeat(3),
    ];
    const psks = [PSK, Buffer.alloc(1, 7), Buffer.alloc(2000, 0xab)];
    let n = 0;
    for (const psk of psks)
      for (const a of bootIDs)
        for (const b of bootIDs) {
          const src = { ip: 'fd00:1234::1', bootID: a };
          const dst = { ip: '10.0.0.2', bootID: b };
          if (!derivePairKey(psk, src, dst).equals(reference(psk, src, dst))) t.fail(`differs for ${a} -> ${b}`);
          n++;
        }
    t.equal(n, psks.length * bootIDs.length ** 2, `${n} combinations compared`);
    t.end();
  },
);
