// The fake datapath behaves like the real one for its users: validation, errors, idempotence, diffs, and
// the marking rules (MarkOracle) on frames.
import { createHash } from 'node:crypto';
import t from 'tap';
import { FakeDatapath } from '../fakes/fake-datapath.js';
import { MarkOracle, parseFrame } from '../fakes/mark-rules.js';
import { arpFrame, ipFrame, PROTO_ESP, truncated } from '../host/lib/packets.js';

const ifaces = [
  { name: 'eth0', ifindex: 2 },
  { name: 'veth1', ifindex: 9 },
  { name: 'eth0', ifindex: 2, netns: '/run/netns/other' },
];

t.test('requires load, attaches idempotently, detaches once', async (t) => {
  const dp = new FakeDatapath({ interfaces: ifaces });
  await t.rejects(dp.attach('encrypt', 'veth1'), /not loaded/);
  await dp.load({ bpffsRoot: '/sys/fs/bpf/x' });
  await dp.load({ bpffsRoot: '/sys/fs/bpf/x' });
  await t.rejects(dp.load({ bpffsRoot: '/sys/fs/bpf/y' }), /already loaded at \/sys\/fs\/bpf\/x/);
  const a = await dp.attach('encrypt', 'veth1');
  t.match(a, { kind: 'encrypt', ifindex: 9, ifname: 'veth1', mode: 'tcx', netns: undefined });
  t.same(await dp.attach('encrypt', 9), a, 'by index, same attachment');
  await dp.attach('decrypt', 'eth0', { netns: '/run/netns/other', mode: 'clsact' });
  t.equal((await dp.attachments()).length, 2);
  await t.rejects(dp.attach('decrypt', 'eth7'), { code: 'KMESH_ERRNO', errno: 19, message: /find interface eth7/ });
  t.equal(await dp.detach('encrypt', 'veth1'), true);
  t.equal(await dp.detach('encrypt', 'veth1'), false);
  dp.removeInterface('eth0', '/run/netns/other');
  t.same(await dp.attachments(), [], 'attachments vanish with their device');
  t.equal(dp.bpffsRoot, '/sys/fs/bpf/x');
});

t.test('mode choice follows the pretend kernel', async (t) => {
  const old = new FakeDatapath({ interfaces: ifaces, tcx: false });
  await old.load();
  t.equal((await old.attach('decrypt', 'eth0')).mode, 'clsact');
  await t.rejects(old.attach('encrypt', 'veth1', { mode: 'tcx' }), {
    errno: 22,
    message: /attach TCX ingress link to veth1/,
  });
  const changed = await old.attach('decrypt', 'eth0', { mode: 'clsact' });
  t.equal(changed.mode, 'clsact');
});

t.test('maps by difference, bad input rejected and the last good state kept', async (t) => {
  const dp = new FakeDatapath();
  await dp.load();
  t.same(await dp.setRemoteCidrs(['10.244.1.0/24', 'fd00:1::/64']), { added: 2, changed: 0, removed: 0 });
  t.same(await dp.setRemoteCidrs(['10.244.1.0/24', '10.244.2.0/24']), { added: 1, changed: 0, removed: 1 });
  await t.rejects(dp.setRemoteCidrs(['10.244.3.0/24', '10.244.4.1/24']), /CIDR "10.244.4.1\/24" has host bits/);
  t.same(dp.remoteCidrs, ['10.244.1.0/24', '10.244.2.0/24']);
  t.same(await dp.setPeers(new Map([['198.18.0.2', 1]])), { added: 1, changed: 0, removed: 0 });
  await t.rejects(dp.setPeers(new Map([['198.18.0.3', 0]])), /id 0 is outside/);
  t.same([...dp.peers], [['198.18.0.2', 1]]);
  const s = await dp.stats();
  // Index: header, reserved node, and the IPv4 wide root (256 nodes) on the bytes after 10.244.
  t.match(s, { remoteCidrEntries: 2, peers: 1, attachments: 0, cidrIndex: { nodes: 258, records: 0 } });
  t.same(await dp.cidrIndexUse(), s.cidrIndex, 'the index of the last good CIDRs');
  // 600 IPv6 host routes in pairs that differ in the last bit: more nodes than an index holds.
  const pairs = Array.from({ length: 300 }, (_, i) => {
    const hex = createHash('sha256').update(String(i)).digest('hex').slice(0, 31);
    const groups = (last: string) => `${hex}${last}`.match(/.{4}/g)!.join(':');
    return [`${groups('0')}/128`, `${groups('1')}/128`];
  }).flat();
  await dp.setRemoteCidrs(pairs);
  t.equal(await dp.cidrIndexUse(), null, 'too large for an index: the trie answers, as in the kernel');
  await dp.uninstall();
  await t.rejects(dp.stats(), /not loaded/);
});

t.test('marking rules', async (t) => {
  const dp = new FakeDatapath();
  await dp.load();
  await dp.setRemoteCidrs(['10.244.1.0/24', 'fd00:1::/64']);
  await dp.setPeers(new Map([['198.18.0.2', 7]]));
  t.equal(dp.markEncrypt(ipFrame('10.244.0.5', '10.244.1.9')), 0xe0);
  t.equal(dp.markEncrypt(ipFrame('10.244.0.5', '10.244.1.9'), 0x4000), 0x40e0, 'other bits kept');
  t.equal(dp.markEncrypt(ipFrame('10.244.0.5', '10.244.1.9'), 0xd0), 0xe0, 'type byte replaced, not OR-ed');
  t.equal(dp.markEncrypt(ipFrame('10.244.0.5', '10.245.1.9'), 0x4000), 0x4000);
  t.equal(dp.markEncrypt(ipFrame('fd00:0::5', 'fd00:1::9')), 0xe0);
  t.equal(dp.markEncrypt(arpFrame(), 0x12), 0x12);
  t.equal((await dp.stats()).counters.encryptMarked, 4);
  t.equal(dp.markDecrypt(ipFrame('198.18.0.2', '198.18.0.1', PROTO_ESP), 0xdead4000), 0x000740d0);
  t.equal(dp.markDecrypt(ipFrame('198.18.0.9', '198.18.0.1', PROTO_ESP), 0x40d0), 0x4000);
  t.equal(dp.markDecrypt(ipFrame('198.18.0.9', '198.18.0.1', PROTO_ESP), 0x4000), 0x4000);
  t.equal(dp.markDecrypt(ipFrame('10.244.1.9', '10.244.0.5'), 0xd0), 0xd0, 'decrypted traffic kept');
  t.equal(dp.markDecrypt(ipFrame('10.9.9.9', '10.244.0.5'), 0x40d0), 0x4000, 'impersonation cleared');
  t.equal(dp.markDecrypt(truncated(ipFrame('10.244.1.9', '10.244.0.5'), 20), 0xd0), 0, 'unparsed 0xd0 cleared');
  t.equal(dp.markDecrypt(arpFrame(), 0x40), 0x40);
});

t.test('frame parsing stops where the programs stop', (t) => {
  t.equal(parseFrame(Buffer.alloc(10)), undefined);
  t.equal(parseFrame(truncated(ipFrame('1.1.1.1', '2.2.2.2'), 33)), undefined);
  t.equal(parseFrame(truncated(ipFrame('fd00::1', 'fd00::2'), 53)), undefined);
  t.match(parseFrame(ipFrame('fd00::1', 'fd00::2', PROTO_ESP)), { family: 6, proto: PROTO_ESP });
  const o = new MarkOracle({ remoteCidrs: ['0.0.0.0/0'], peers: new Map() });
  t.ok(o.isRemote(4, Buffer.from([1, 2, 3, 4])));
  t.notOk(o.isRemote(6, Buffer.alloc(16)), 'an IPv4 default route says nothing about IPv6');
  t.end();
});

t.test('twin: a second fake with the same maps, built by the same calls', async (t) => {
  const dp = new FakeDatapath({ interfaces: ifaces });
  t.same((await dp.twin()).bpffsRoot, undefined, 'an unloaded fake has an unloaded twin');
  await dp.load({ bpffsRoot: '/sys/fs/bpf/tw' });
  await dp.setRemoteCidrs(['10.1.0.0/24', 'fd00:1::/64']);
  await dp.setPeers(new Map([['192.168.0.2', 7]]));
  await dp.setLocalPods(['10.0.0.5']);
  await dp.setPodPeers(new Map([['10.1.0.0/24', 7]]));
  await dp.setMssClamp({ ipv4: 1360, ipv6: 1340 });
  await dp.attach('encrypt', 'veth1');
  const twin = await dp.twin();
  t.equal(twin.bpffsRoot, '/sys/fs/bpf/tw');
  t.same(twin.remoteCidrs, dp.remoteCidrs);
  t.same(twin.peers, dp.peers);
  t.same(twin.localPods, ['10.0.0.5']);
  t.same(twin.podPeers, dp.podPeers);
  t.same(await twin.mssClamp(), await dp.mssClamp());
  t.same(await twin.cidrIndexUse(), await dp.cidrIndexUse());
  t.same(await twin.attachments(), [], 'attachments are not copied');
  t.not(twin.peers, dp.peers, 'the twin holds copies of its own');
  t.same(await twin.setPeers(dp.peers), { added: 0, changed: 0, removed: 0 }, 'its maps hold the same entries');
});
