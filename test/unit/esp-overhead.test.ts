// The MTU/MSS rule: overheads of rfc4106 ESP tunnel mode per family, the limits for common MTUs, and that a
// full segment at the limit fits while one byte more does not.
import t from 'tap';
import {
  espTunnelSize,
  maxInnerPacket,
  mssClampForMtu,
  IP_HEADER_BYTES,
  TCP_HEADER_BYTES,
} from '../../src/model/esp-overhead.js';

t.test('encrypted size: outer IP + ESP 8 + IV 8 + payload and 2 trailer bytes padded to 4 + ICV 16', (t) => {
  t.equal(espTunnelSize(1446, 4), 20 + 8 + 8 + 1448 + 16);
  t.equal(espTunnelSize(1447, 4), 20 + 8 + 8 + 1452 + 16, 'padding to 4 bytes');
  t.equal(espTunnelSize(100, 6), 40 + 8 + 8 + 104 + 16);
  t.end();
});

t.test('limits for common MTUs', (t) => {
  t.same(mssClampForMtu(1500), { ipv4: 1406, ipv6: 1366 });
  t.same(mssClampForMtu(9001), { ipv4: 8906, ipv6: 8866 });
  t.same(mssClampForMtu(1280), { ipv4: 1186, ipv6: 1146 });
  t.end();
});

t.test('a full segment at the limit fits, one byte more does not', (t) => {
  for (let mtu = 1280; mtu <= 1600; mtu++) {
    const clamp = mssClampForMtu(mtu);
    for (const family of [4, 6] as const) {
      const mss = family === 4 ? clamp.ipv4 : clamp.ipv6;
      const packet = (seg: number) => IP_HEADER_BYTES[family] + TCP_HEADER_BYTES + seg;
      if (espTunnelSize(packet(mss), family) > mtu) t.fail(`mtu ${mtu} IPv${family}: ${mss} does not fit`);
      if (espTunnelSize(packet(mss + 1), family) <= mtu) t.fail(`mtu ${mtu} IPv${family}: ${mss + 1} still fits`);
      if (maxInnerPacket(mtu, family) !== packet(mss)) t.fail(`mtu ${mtu} IPv${family}: limit below the largest`);
    }
  }
  t.pass('MTUs 1280..1600, both families');
  t.end();
});

t.test('MTUs outside the range are refused in one line', (t) => {
  t.throws(() => mssClampForMtu(1279), /IPsec MTU 1279 is outside 1280\.\.65535/);
  t.throws(() => mssClampForMtu(65536), /outside/);
  t.throws(() => mssClampForMtu(1500.5), /outside/);
  t.end();
});
