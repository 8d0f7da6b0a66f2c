// Pure tests of the datapath's map layouts, family flags, diffs and attach records.
import t from 'tap';
import { rng } from '../fakes/cidr-samples.js';
import {
  configValue,
  diffEntries,
  localPodEntries,
  parseConfigValue,
  plaintextCounts,
  podPeerEntries,
  nodeinfoEntries,
  nodeinfoKey,
  NODEINFO_V4,
  NODEINFO_V6,
  peerEntries,
  peerKey,
} from '../../src/datapath/map-layout.js';
import { clearHostBits, formatIp, parseCidrStrict, prefixMatches } from '../../src/model/ip-address.js';
import {
  decodeAttachRecord,
  encodeAttachKey,
  encodeAttachValue,
  isTcxLinkPinName,
  tcxLinkPinName,
  type AttachRecord,
} from '../../src/datapath/tc-attachments.js';

t.test('km_nodeinfo keys use the Kmesh layout: prefixlen of the address bits, IPv4 in the first 4 bytes', (t) => {
  const [e] = nodeinfoEntries(['10.244.1.0/24']);
  t.equal(e!.key.toString('hex'), '18000000' + '0af40100' + '0'.repeat(24));
  t.equal(e!.value.readUInt32LE(0), NODEINFO_V4);
  const [v6] = nodeinfoEntries(['fd00:10:244:1::/64']);
  t.equal(v6!.key.readUInt32LE(0), 64);
  t.equal(v6!.value.readUInt32LE(0), NODEINFO_V6);
  t.end();
});

t.test('family flags keep IPv4 and IPv6 prefixes with the same leading bytes apart', (t) => {
  // 32.1.0.0/16 and 2001::/16 are the same trie key.
  const same = nodeinfoEntries(['32.1.0.0/16', '2001::/16']);
  t.equal(same.length, 1);
  t.equal(same[0]!.value.readUInt32LE(0), NODEINFO_V4 | NODEINFO_V6);
  // A longer IPv4 key inside an IPv6 CIDR answers for IPv6 too, so the longest match stays right for both.
  const nested = nodeinfoEntries(['2001::/16', '32.1.5.0/24']);
  const byLen = new Map(nested.map((e) => [e.key.readUInt32LE(0), e.value.readUInt32LE(0)]));
  t.equal(byLen.get(16), NODEINFO_V6);
  t.equal(byLen.get(24), NODEINFO_V4 | NODEINFO_V6);
  // An IPv6 key not covered by any IPv4 CIDR carries no IPv4 flag.
  const alone = nodeinfoEntries(['32.0.0.0/8', '2001:db8::/32']);
  const v6 = alone.find((e) => e.key.readUInt32LE(0) === 32)!;
  t.equal(v6.value.readUInt32LE(0), NODEINFO_V6 | NODEINFO_V4, '2001:db8::/32 lies under 32.0.0.0/8 as a key');
  const v4 = alone.find((e) => e.key.readUInt32LE(0) === 8)!;
  t.equal(v4.value.readUInt32LE(0), NODEINFO_V4);
  t.throws(() => nodeinfoEntries(['10.0.0.0/8', 'bad']), /CIDR "bad"/);
  t.end();
});

t.test('peer entries: address -> id with validation', (t) => {
  const entries = peerEntries(
    new Map([
      ['198.18.0.2', 1],
      ['fd00::2', 2],
    ]),
  );
  t.equal(entries.length, 2);
  t.equal(peerKey('198.18.0.2').toString('hex'), 'c6120002' + '0'.repeat(24) + '02000000');
  t.equal(peerKey('fd00::2').readUInt32LE(16), 10);
  t.throws(() => peerEntries(new Map([['198.18.0.2', 0]])), /peer 198.18.0.2: id 0 is outside 1..65535/);
  t.throws(() => peerEntries(new Map([['198.18.0.2', 65536]])), /outside 1..65535/);
  t.throws(() => peerEntries(new Map([['198.18.0.2', 1.5]])), /outside/);
  t.throws(() => peerEntries(new Map([['node-b', 1]])), /peer address "node-b" is not an IPv4 or IPv6 address/);
  t.throws(
    () =>
      peerEntries(
        new Map([
          ['fd00::2', 1],
          ['fd00:0::2', 2],
        ]),
      ),
    /same address as fd00::2 but has id 2, not 1/,
  );
  t.end();
});

t.test(
  'hash-map diffs delete keys no longer wanted first, then write new and changed ones, and skip equal ones',
  (t) => {
    const a = peerEntries(
      new Map([
        ['10.0.0.1', 1],
        ['10.0.0.2', 2],
      ]),
    );
    const b = peerEntries(
      new Map([
        ['10.0.0.2', 2],
        ['10.0.0.3', 3],
      ]),
    );
    const { ops, change } = diffEntries(a, b);
    t.same(change, { added: 1, changed: 0, removed: 1 });
    t.equal(ops.length, 2);
    t.notOk(ops[0]!.value, 'delete first: the map never holds both sets');
    t.equal(ops[0]!.key.toString('hex'), peerKey('10.0.0.1').toString('hex'));
    t.ok(ops[1]!.value, 'update last');
    t.equal(ops[1]!.key.toString('hex'), peerKey('10.0.0.3').toString('hex'));
    t.same(diffEntries(b, b), { ops: [], change: { added: 0, changed: 0, removed: 0 } });
    const changed = diffEntries(peerEntries(new Map([['1.1.1.1', 1]])), peerEntries(new Map([['1.1.1.1', 2]])));
    t.same(changed.change, { added: 0, changed: 1, removed: 0 });
    t.same(changed.ops.length, 1, 'a changed key is updated in place, never deleted');
    t.end();
  },
);

t.test('attach records round-trip through the km_tc_attach layout', (t) => {
  const r: AttachRecord = {
    netnsIno: 4026532000n,
    ifindex: 7,
    kind: 'decrypt',
    mode: 'clsact',
    progId: 1234,
    handle: 1,
    priority: 49152,
    ifname: 'eth0',
    netns: '/run/netns/kmt-x',
  };
  const key = encodeAttachKey(r.netnsIno, r.ifindex, r.kind);
  t.same(decodeAttachRecord(key, encodeAttachValue(r)), r);
  t.throws(() => encodeAttachValue({ ...r, ifname: 'x'.repeat(16) }), /interface name "x{16}" is too long/);
  t.throws(() => encodeAttachValue({ ...r, netns: '/'.repeat(112) }), /netns path .* is longer than 111 bytes/);
  const bad = encodeAttachValue(r);
  bad.writeUInt32LE(9, 0);
  t.throws(() => decodeAttachRecord(key, bad), /unknown mode 9/);
  t.throws(() => decodeAttachRecord(Buffer.alloc(3), bad), /sizes 3\/144/);
  t.equal(tcxLinkPinName('encrypt', 5n, 3), 'link_encrypt_5_3');
  t.ok(isTcxLinkPinName('link_decrypt_4026531840_12'));
  t.notOk(isTcxLinkPinName('tc_mark_encrypt'));
  t.end();
});

t.test(
  'nodeinfoEntries: the flags of the pairwise definition, for nested and shared-prefix CIDRs of both families',
  (t) => {
    // The definition: key k gets the family flag of every CIDR c with c.prefixLen <= k.prefixLen whose first
    // c.prefixLen bits equal k's (families mixed: an IPv4 and an IPv6 prefix may share leading bytes).
    const reference = (texts: string[]): Map<string, number> => {
      const parsed = texts.map((x) => parseCidrStrict(x));
      const out = new Map<string, number>();
      for (const k of parsed) {
        let flags = 0;
        for (const c of parsed)
          if (c.prefixLen <= k.prefixLen && prefixMatches(c.bytes, k.bytes, c.prefixLen))
            flags |= c.family === 4 ? NODEINFO_V4 : NODEINFO_V6;
        out.set(nodeinfoKey(k.prefixLen, k.bytes).toString('hex'), flags);
      }
      return out;
    };
    const next = rng(11);
    const texts = new Set<string>(['32.1.0.0/16', '2001::/16', '2001:db8::/32', '32.0.0.0/8', '0.0.0.0/0']);
    while (texts.size < 600) {
      const len = [8, 12, 16, 20, 24, 31, 32][next(7)]!;
      const v4 = parseCidrStrict(`${[10, 32, 192][next(3)]}.${next(4)}.${next(8)}.${next(256)}/32`).bytes;
      clearHostBits(v4, len);
      texts.add(`${Array.from(v4).join('.')}/${len}`);
      if (next(3) === 0) {
        const v6len = [16, 20, 48, 64, 127][next(5)]!;
        const v6 = parseCidrStrict(
          `${['2001', '2000', '200a', 'fd00'][next(4)]}:db8:${next(4).toString(16)}::${next(9)}/128`,
        ).bytes;
        clearHostBits(v6, v6len);
        texts.add(`${formatIp(v6)}/${v6len}`);
      }
    }
    const list = [...texts];
    const got = nodeinfoEntries(list);
    const expected = reference(list);
    t.equal(got.length, expected.size, 'one entry per distinct key');
    let mixed = 0;
    for (const e of got) {
      const flags = e.value.readUInt32LE(0);
      t.equal(flags, expected.get(e.key.toString('hex')), e.key.toString('hex'));
      if (flags === (NODEINFO_V4 | NODEINFO_V6)) mixed++;
    }
    t.ok(mixed > 0, `keys covered by both families occur (${mixed})`);
    t.end();
  },
);

t.test('km_ipsec_config: MSS per family and strict mode, 8 bytes', (t) => {
  const v = configValue({ mss: { ipv4: 1406, ipv6: 1366 }, strict: 'enforce' });
  t.equal(v.toString('hex'), '7e05560502000000');
  t.same(parseConfigValue(v), { mss: { ipv4: 1406, ipv6: 1366 }, strict: 'enforce' });
  t.throws(() => configValue({ mss: { ipv4: 0, ipv6: 65536 }, strict: 'off' }), /IPv6 MSS clamp 65536 is outside/);
  t.throws(() => parseConfigValue(Buffer.from('0000000003000000', 'hex')), /strict mode 3 is not one of/);
  t.end();
});

t.test('km_pod_peers: IPv4 keys are IPv4-mapped, so no IPv6 prefix shares them', (t) => {
  const [v4] = podPeerEntries(new Map([['32.1.0.0/16', 7]]));
  const [v6] = podPeerEntries(new Map([['2001::/16', 8]]));
  t.equal(v4!.key.toString('hex'), `70000000${'00'.repeat(10)}ffff20010000`, 'prefixlen 96+16, ::ffff:32.1.0.0');
  t.equal(v6!.key.toString('hex'), `100000002001${'00'.repeat(14)}`);
  t.equal(v4!.value.readUInt32LE(0), 7);
  t.throws(() => podPeerEntries(new Map([['10.0.0.0/8', 70000]])), /peer id 70000 is outside 1\.\.65535/);
  t.end();
});

t.test('km_local_pods and km_plaintext', (t) => {
  t.equal(localPodEntries(['10.0.0.1', '10.0.0.1', 'fd00::1']).length, 2, 'one entry per address');
  t.throws(() => localPodEntries(['nope']), /pod address "nope" is not an IPv4 or IPv6 address/);
  const key = Buffer.alloc(8);
  key.writeUInt32LE(3, 0);
  key.writeUInt32LE(1, 4);
  const perCpu = Buffer.alloc(16);
  perCpu.writeBigUInt64LE(5n, 0);
  perCpu.writeBigUInt64LE(2n, 8);
  t.same(plaintextCounts([{ key, value: perCpu }]), [{ peer: 3, mode: 'audit', packets: 7 }], 'summed over CPUs');
  t.end();
});
