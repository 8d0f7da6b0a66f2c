// The write order of the real maps at their capacity (root, private bpffs root): km_nodeinfo (an LPM trie of
// 16,384 entries) takes a 10,000-CIDR set and then a disjoint 10,000-CIDR set, km_ipsec_peers (a hash) a
// 6,000-address set and then a disjoint one, each change removing what goes before adding what comes (the
// previous order, additions first, failed both with the kernel's E2BIG / ENOSPC); a CIDR set larger than
// km_nodeinfo is refused before anything is written, and the programs answer from the new set.
import t from 'tap';

import { BpfDatapath } from '../../src/datapath/bpf-datapath.js';
import { MAP_CAPACITY } from '../../src/datapath/map-layout.js';
import { nativeBpf, withFd } from '../../src/datapath/native-bpf.js';
import { ipFrame } from './lib/packets.js';
import { kernelSkipReason, OBJ_DIR, privateBpffsRoot } from './lib/kernel.js';

const skip = kernelSkipReason();
const root = privateBpffsRoot('order');

const cidrs = (second: number, n: number): string[] =>
  Array.from({ length: n }, (_, i) => `10.${second + (i >> 8)}.${i & 255}.0/24`);

t.test('maps at their capacity: disjoint sets replace each other', { skip }, async (t) => {
  const dp = new BpfDatapath();
  t.teardown(async () => {
    await dp.uninstall().catch(() => undefined);
  });
  await dp.load({ bpffsRoot: root, objDir: OBJ_DIR });
  const bpf = nativeBpf();
  for (const [name, capacity] of Object.entries(MAP_CAPACITY)) {
    const info = await withFd(bpf.getPinned(`${root}/map/${name}`), (fd) => bpf.mapInfo(fd));
    t.equal(info.maxEntries, capacity, `the fake's capacity of ${name} is the map's`);
  }

  const a = [...cidrs(0, 8000), ...Array.from({ length: 2000 }, (_, i) => `fd00:10:${(i + 1).toString(16)}::/64`)];
  const b = [...cidrs(100, 8000), ...Array.from({ length: 2000 }, (_, i) => `fd00:20:${(i + 1).toString(16)}::/64`)];
  t.same(await dp.setRemoteCidrs(a), { added: 10000, changed: 0, removed: 0 });
  t.same(await dp.setRemoteCidrs(b), { added: 10000, changed: 0, removed: 10000 }, 'a disjoint 10,000 fits');
  t.equal((await dp.stats()).remoteCidrEntries, 10000);
  const mark = async (dst: string): Promise<number> =>
    (await dp.testRun('tc_mark_encrypt', ipFrame(dst.includes(':') ? '2001:db8::1' : '192.0.2.1', dst))).mark;
  t.equal(await mark('10.100.3.4'), 0xe0, 'new set answers');
  t.equal(await mark('10.0.3.4'), 0, 'old set gone');
  t.equal(await mark('fd00:20:7d0::1'), 0xe0);
  t.equal(await mark('fd00:10:7d0::1'), 0);

  await t.rejects(dp.setRemoteCidrs([...a, ...cidrs(150, 8000)]), {
    message: 'km_nodeinfo would need 18000 entries, more than its 16384',
  });
  t.equal((await dp.stats()).remoteCidrEntries, 10000, 'nothing written by the refused change');
  t.equal(await mark('10.100.3.4'), 0xe0);

  const peers = (base: number): Map<string, number> =>
    new Map(Array.from({ length: 6000 }, (_, i) => [`172.${base + (i >> 8)}.${i & 255}.1`, 1 + i]));
  t.same(await dp.setPeers(peers(16)), { added: 6000, changed: 0, removed: 0 });
  t.same(await dp.setPeers(peers(64)), { added: 6000, changed: 0, removed: 6000 }, 'a disjoint 6,000 fits');
  t.equal((await dp.stats()).peers, 6000);
});
