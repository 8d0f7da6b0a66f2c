// BPF unit tests of tc_mark_encrypt / tc_mark_decrypt through BPF_PROG_TEST_RUN (real verifier, real maps,
// no device), a differential check against the TypeScript statement of the rules, restart with pinned maps,
// and bpftool finding the names. Runs as root with a private bpffs root; removes it afterwards.
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import t from 'tap';
import { BpfDatapath } from '../../src/datapath/bpf-datapath.js';
import { MarkOracle } from '../fakes/mark-rules.js';
import {
  arpFrame,
  frameMss,
  ipFrame,
  linuxLikeOptions,
  mssOption,
  PROTO_ESP,
  PROTO_UDP,
  TCP_ACK,
  TCP_SYN,
  tcpChecksumOk,
  tcpFrame,
  truncated,
} from './lib/packets.js';
import { kernelSkipReason, OBJ_DIR, privateBpffsRoot, run } from './lib/kernel.js';

const skip = kernelSkipReason();
const root = privateBpffsRoot('prog');
const CIDRS = ['10.244.1.0/24', '10.244.2.0/24', 'fd00:10:244:1::/64', '32.1.5.0/24', '2001::/16'];
const PEERS = new Map([
  ['198.18.0.2', 1],
  ['198.18.0.3', 0x1234],
  ['fd00:198:18::2', 0xffff],
]);
const TC_ACT_UNSPEC = -1;

t.test('tc_mark_encrypt and tc_mark_decrypt through test-run', { skip }, async (t) => {
  const dp = new BpfDatapath();
  t.teardown(async () => {
    await dp.uninstall().catch(() => undefined);
  });
  await dp.load({ bpffsRoot: root, objDir: OBJ_DIR });
  await dp.setRemoteCidrs(CIDRS);
  await dp.setPeers(PEERS);
  const enc = async (frame: Buffer, mark = 0) => dp.testRun('tc_mark_encrypt', frame, { mark });
  const dec = async (frame: Buffer, mark = 0) => dp.testRun('tc_mark_decrypt', frame, { mark });

  t.test('encrypt', async (t) => {
    t.match(await enc(ipFrame('10.244.0.5', '10.244.1.9')), { mark: 0xe0, retval: TC_ACT_UNSPEC }, 'IPv4 hit');
    t.match(await enc(ipFrame('10.244.0.5', '10.244.3.9')), { mark: 0, retval: TC_ACT_UNSPEC }, 'IPv4 miss');
    t.equal((await enc(ipFrame('fd00:10:244::5', 'fd00:10:244:1::9'))).mark, 0xe0, 'IPv6 hit');
    t.equal((await enc(ipFrame('fd00:10:244::5', 'fd00:10:244:2::9'))).mark, 0, 'IPv6 miss');
    t.equal((await enc(ipFrame('10.244.0.5', '10.244.1.9'), 0x4000)).mark, 0x40e0, 'kube-proxy bit kept');
    t.equal((await enc(ipFrame('10.244.0.5', '10.244.1.9'), 0xabcd12d0)).mark, 0xabcd12e0, 'only the type byte');
    t.equal((await enc(ipFrame('10.244.0.5', '10.244.3.9'), 0x4000)).mark, 0x4000, 'miss keeps mark');
    t.equal((await enc(arpFrame(), 0x77)).mark, 0x77, 'non-IP untouched');
    // test-run refuses IP frames shorter than their IP header (EINVAL); datapath-traffic sends such frames.
    t.equal((await enc(truncated(arpFrame(), 14))).mark, 0, 'bare Ethernet header');
    // 2001::/16 (IPv6) and 32.1.0.0/16 share a key; only 32.1.5.0/24 is an IPv4 remote CIDR.
    t.equal((await enc(ipFrame('10.0.0.1', '32.1.9.9'))).mark, 0, 'IPv4 not matched by an IPv6 CIDR');
    t.equal((await enc(ipFrame('10.0.0.1', '32.1.5.9'))).mark, 0xe0, 'IPv4 CIDR inside the shared key');
    t.equal((await enc(ipFrame('fd00::1', '2001:105::1'))).mark, 0xe0, 'IPv6 under a longer IPv4 key');
    t.equal((await enc(ipFrame('fd00::1', '0af4:0100::1'))).mark, 0, 'IPv6 looking like 10.244.1.0');
  });

  t.test('decrypt', async (t) => {
    const esp = (src: string, dst: string) => ipFrame(src, dst, PROTO_ESP);
    t.equal((await dec(esp('198.18.0.2', '198.18.0.1'))).mark, 0x000100d0, 'ESP from peer 1');
    t.equal((await dec(esp('198.18.0.3', '198.18.0.1'), 0x4000)).mark, 0x123440d0, 'ESP from peer 0x1234');
    t.equal((await dec(esp('fd00:198:18::2', 'fd00:198:18::1'))).mark, 0xffff00d0, 'IPv6 ESP');
    t.equal((await dec(esp('198.18.0.2', '198.18.0.1'), 0x5555c0e0)).mark, 0x0001c0d0, 'overwrites id+type');
    t.equal((await dec(esp('198.18.0.9', '198.18.0.1'))).mark, 0, 'ESP from an unknown peer untouched');
    t.equal((await dec(esp('198.18.0.9', '198.18.0.1'), 0x400040d0)).mark, 0x40004000, 'unknown peer 0xd0 cleared');
    t.equal((await dec(esp('198.18.0.9', '198.18.0.1'), 0x40e0)).mark, 0x40e0, 'unknown peer other mark kept');
    t.equal((await dec(ipFrame('198.18.0.2', '198.18.0.1', PROTO_UDP))).mark, 0, 'peer plaintext untouched');
    t.equal((await dec(ipFrame('10.244.1.9', '10.244.0.5'), 0xd0)).mark, 0xd0, 'decrypted IPv4 kept');
    t.equal((await dec(ipFrame('fd00:10:244:1::9', 'fd00::5'), 0x40d0)).mark, 0x40d0, 'decrypted IPv6 kept');
    t.equal((await dec(ipFrame('10.9.9.9', '10.244.0.5'), 0xd0)).mark, 0, 'plaintext with 0xd0 cleared');
    t.equal((await dec(ipFrame('10.9.9.9', '10.244.0.5'), 0x400040d0)).mark, 0x40004000, 'only type byte cleared');
    t.equal((await dec(ipFrame('fd00:9::9', 'fd00::5'), 0xd0)).mark, 0, 'IPv6 plaintext with 0xd0 cleared');
    t.equal((await dec(ipFrame('10.9.9.9', '10.244.0.5'), 0xe0)).mark, 0xe0, 'other type byte untouched');
    t.equal((await dec(arpFrame(), 0xd0)).mark, 0, 'non-IP with 0xd0 cleared');
    t.equal((await dec(arpFrame(), 0x4000)).mark, 0x4000, 'non-IP untouched');
    t.equal((await dec(truncated(arpFrame(), 14), 0x40d0)).mark, 0x4000, 'bare Ethernet with 0xd0 cleared');
    t.equal((await dec(esp('198.18.0.2', '198.18.0.1'))).retval, TC_ACT_UNSPEC, 'never a drop');
  });

  t.test('MSS clamp on the encrypt hit path', async (t) => {
    t.same(await dp.mssClamp(), { ipv4: 0, ipv6: 0 }, 'fresh maps: no clamp');
    const syn4 = tcpFrame('10.244.0.5', '10.244.1.9', { options: mssOption(1460) });
    t.equal(frameMss((await enc(syn4)).packet), 1460, 'no clamp configured: MSS untouched');
    t.equal(await dp.setMssClamp({ ipv4: 1406, ipv6: 1366 }), true, 'clamp set');
    t.equal(await dp.setMssClamp({ ipv4: 1406, ipv6: 1366 }), false, 'same clamp: no write');
    const before = (await dp.stats()).counters.encryptMssClamped;
    const clamped = async (frame: Buffer, want: number, what: string) => {
      const out = await enc(frame);
      t.equal(frameMss(out.packet), want, what);
      t.ok(tcpChecksumOk(out.packet), `${what}: checksum valid`);
      t.equal(out.packet.length, frame.length, `${what}: length kept`);
      return out;
    };
    const out = await clamped(syn4, 1406, 'IPv4 SYN 1460 -> 1406');
    t.match(out, { mark: 0xe0, retval: TC_ACT_UNSPEC }, 'still marked, never a drop');
    const tcpCheck = 14 + 20 + 16;
    t.same(out.packet.subarray(0, tcpCheck), syn4.subarray(0, tcpCheck), 'headers before the TCP checksum unchanged');
    t.same(out.packet.subarray(tcpCheck + 2, 54), syn4.subarray(tcpCheck + 2, 54), 'and after it up to the options');
    await clamped(
      tcpFrame('10.244.0.5', '10.244.1.9', { flags: TCP_SYN | TCP_ACK, options: mssOption(8960) }),
      1406,
      'IPv4 SYN-ACK',
    );
    await clamped(
      tcpFrame('fd00:10:244::5', 'fd00:10:244:1::9', { options: linuxLikeOptions(1440) }),
      1366,
      'IPv6 SYN, MSS after other options',
    );
    await clamped(
      tcpFrame('10.244.0.5', '10.244.1.9', { options: linuxLikeOptions(65495) }),
      1406,
      'IPv4 MSS after NOP, TS, SACK, WS',
    );
    await clamped(
      tcpFrame('10.244.0.5', '10.244.1.9', { options: mssOption(1460), ipv4Options: 4 }),
      1406,
      'IPv4 header with options',
    );
    await clamped(
      tcpFrame('10.244.0.5', '10.244.1.9', { options: mssOption(1460), payloadLen: 33 }),
      1406,
      'SYN with data, odd length',
    );
    t.equal((await dp.stats()).counters.encryptMssClamped - before, 6, 'one count per clamped segment');

    const same = async (frame: Buffer, what: string) => {
      const r = await enc(frame);
      t.same(r.packet, frame, what);
    };
    await same(tcpFrame('10.244.0.5', '10.244.1.9', { options: mssOption(1200) }), 'MSS below the clamp kept');
    await same(tcpFrame('10.244.0.5', '10.244.1.9', { options: mssOption(1406) }), 'MSS at the clamp kept');
    await same(tcpFrame('10.244.0.5', '10.244.1.9', { flags: TCP_ACK, options: mssOption(1460) }), 'no SYN: untouched');
    await same(tcpFrame('10.244.0.5', '10.244.3.9', { options: mssOption(1460) }), 'SYN to a non-remote pod untouched');
    await same(tcpFrame('10.244.0.5', '10.244.1.9', { options: Buffer.from([1, 1, 4, 2]) }), 'SYN without MSS');
    await same(
      tcpFrame('10.244.0.5', '10.244.1.9', { options: Buffer.from([8, 0, 2, 4, 5, 180]) }),
      'bad option length: stop',
    );
    await same(
      tcpFrame('10.244.0.5', '10.244.1.9', { options: Buffer.from([0, 0, 2, 4, 5, 180]) }),
      'MSS after EOL ignored',
    );
    await same(tcpFrame('10.244.0.5', '10.244.1.9', { options: Buffer.from([2, 3, 5, 180]) }), 'MSS of bad length');
    await same(
      tcpFrame('10.244.0.5', '10.244.1.9', { options: mssOption(1460), fragmentOffset: 0x2001 }),
      'IPv4 fragment',
    );
    t.equal(
      (await enc(truncated(tcpFrame('10.244.0.5', '10.244.1.9', { options: mssOption(1460) }), 40))).mark,
      0xe0,
      'TCP header cut short: marked, left alone',
    );

    t.equal(await dp.setMssClamp({ ipv4: 0, ipv6: 1366 }), true);
    await same(syn4, 'IPv4 clamp 0: off for IPv4');
    await clamped(tcpFrame('fd00:10:244::5', 'fd00:10:244:1::9', { options: mssOption(1440) }), 1366, 'IPv6 still on');
    await t.rejects(dp.setMssClamp({ ipv4: -1, ipv6: 0 }), /IPv4 MSS clamp -1 is outside 0\.\.65535/);
    t.same(await dp.mssClamp(), { ipv4: 0, ipv6: 1366 }, 'refused value wrote nothing');
    await dp.setMssClamp({ ipv4: 1406, ipv6: 1366 });
  });

  t.test('strict ingress: plaintext from a peer pod CIDR to a managed pod', async (t) => {
    const TC_ACT_SHOT = 2;
    t.equal(await dp.strictMode(), 'off', 'fresh maps: off');
    t.same(await dp.setLocalPods(['10.244.0.5', 'fd00::5', '10.244.0.5']), { added: 2, changed: 0, removed: 0 });
    const podPeers = new Map([
      ['10.244.1.0/24', 1],
      ['10.244.2.0/24', 0x1234],
      ['fd00:10:244:1::/64', 0xffff],
      ['32.1.5.0/24', 7],
      ['2001::/16', 8],
    ]);
    t.same(await dp.setPodPeers(podPeers), { added: 5, changed: 0, removed: 0 });
    const plain = ipFrame('10.244.1.9', '10.244.0.5');
    const before = (await dp.stats()).counters.decryptPlaintextDropped;

    t.match(await dec(plain), { retval: TC_ACT_UNSPEC, mark: 0 }, 'off: passes');
    t.equal(await dp.setStrictMode('audit'), true);
    t.equal(await dp.setStrictMode('audit'), false, 'same mode: no write');
    t.match(await dec(plain), { retval: TC_ACT_UNSPEC, mark: 0 }, 'audit: passes');
    t.equal(await dp.setStrictMode('enforce'), true);
    t.match(await dec(plain), { retval: TC_ACT_SHOT }, 'enforce: dropped');
    t.match(await dec(ipFrame('fd00:10:244:1::9', 'fd00::5')), { retval: TC_ACT_SHOT }, 'enforce: IPv6 dropped');
    t.match(await dec(ipFrame('2001:105::1', 'fd00::5')), { retval: TC_ACT_SHOT }, 'IPv6 under 2001::/16');
    const untouched = async (frame: Buffer, what: string, mark = 0) => {
      const r = await dec(frame, mark);
      t.equal(r.retval, TC_ACT_UNSPEC, `enforce: ${what} passes`);
      return r;
    };
    await untouched(ipFrame('10.244.1.9', '10.244.0.6'), 'to an unmanaged local pod');
    await untouched(ipFrame('10.9.9.9', '10.244.0.5'), 'from outside every remote pod CIDR');
    await untouched(ipFrame('32.1.9.9', '10.244.0.5'), 'from 32.1.9.9 (only an IPv6 CIDR shares its key)');
    t.equal((await untouched(ipFrame('10.244.1.9', '10.244.0.5'), 'decrypted (0xd0)', 0xd0)).mark, 0xd0, 'kept');
    t.equal((await untouched(ipFrame('198.18.0.2', '10.244.0.5', PROTO_ESP), 'ESP from a peer')).mark, 0x100d0);
    await untouched(ipFrame('198.18.0.9', '198.18.0.1'), 'node-to-node plaintext');
    t.equal((await dp.stats()).counters.decryptPlaintextDropped - before, 3, 'drops counted');
    t.same(
      await dp.plaintext(),
      [
        { peer: 1, mode: 'off', packets: 1 },
        { peer: 1, mode: 'audit', packets: 1 },
        { peer: 1, mode: 'enforce', packets: 1 },
        { peer: 8, mode: 'enforce', packets: 1 },
        { peer: 0xffff, mode: 'enforce', packets: 1 },
      ],
      'per peer and mode; the IPv6 source under 2001::/16 is peer 8, not 32.1.5.0/24 peer 7',
    );
    t.same(await dp.mssClamp(), { ipv4: 1406, ipv6: 1366 }, 'setting the mode kept the MSS clamp');
    await t.rejects(dp.setStrictMode('strict' as 'off'), /strict mode "strict" is not one of off, audit, enforce/);
    await t.rejects(dp.setLocalPods(['10.244.0.300']), /pod address "10.244.0.300"/);
    await t.rejects(dp.setPodPeers(new Map([['10.244.3.0/24', 0]])), /peer id 0 is outside/);
    t.equal(await dp.setStrictMode('off'), true);
    t.match(await dec(plain), { retval: TC_ACT_UNSPEC }, 'off again: passes');
  });

  t.test('agrees with the TypeScript rules on random frames', async (t) => {
    const oracle = new MarkOracle({ remoteCidrs: CIDRS, peers: PEERS });
    let seed = 12345;
    const rnd = (n: number) => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed % n;
    };
    const v4 = ['10.244.1.', '10.244.2.', '10.244.3.', '198.18.0.', '32.1.5.', '32.1.6.', '10.9.9.'];
    const v6 = ['fd00:10:244:1::', 'fd00:10:244:2::', 'fd00:198:18::', '2001:105::', '2002::', '0af4:0100::'];
    const marks = [0, 0xd0, 0xe0, 0x4000, 0x40d0, 0xffff00d0, 0x12345678];
    let disagreements = 0;
    for (let i = 0; i < 300; i++) {
      const six = rnd(2) === 1;
      const pick = (list: string[]) => `${list[rnd(list.length)]}${1 + rnd(3)}`;
      const pool = six ? v6 : v4;
      const frame = ipFrame(pick(pool), pick(pool), rnd(2) ? PROTO_ESP : PROTO_UDP);
      const mark = marks[rnd(marks.length)]!;
      const e = await enc(frame, mark);
      const d = await dec(frame, mark);
      if (e.mark !== oracle.encrypt(frame, mark) || d.mark !== oracle.decrypt(frame, mark)) disagreements++;
    }
    t.equal(disagreements, 0, '300 random frames, both programs');
  });

  t.test('counters', async (t) => {
    const s = await dp.stats();
    t.ok(s.counters.encryptMarked > 0 && s.counters.encryptPassed > 0 && s.counters.encryptUnparsed > 0);
    t.ok(s.counters.decryptEspPeer > 0 && s.counters.decryptEspUnknown > 0);
    t.ok(s.counters.decryptKept > 0 && s.counters.decryptCleared > 0 && s.counters.decryptPassed > 0);
    t.ok(s.counters.encryptMssClamped > 0);
    t.ok(s.counters.decryptPlaintextDropped > 0);
    t.equal(s.peers, 3);
    t.equal(s.remoteCidrEntries, 5);
  });

  t.test('bad input is refused and the maps keep their last good contents', async (t) => {
    await t.rejects(dp.setRemoteCidrs(['10.244.1.0/24', '300.1.1.0/24']), /CIDR "300.1.1.0\/24"/);
    await t.rejects(dp.setPeers(new Map([['198.18.0.2', 70000]])), /id 70000 is outside/);
    t.equal((await enc(ipFrame('10.244.0.5', '10.244.2.9'))).mark, 0xe0);
    t.equal((await dec(ipFrame('198.18.0.3', '198.18.0.1', PROTO_ESP))).mark, 0x123400d0);
    await t.rejects(dp.testRun('tc_noop', arpFrame()), /unknown program "tc_noop"/);
    await t.rejects(dp.testRun('tc_mark_encrypt', Buffer.alloc(4)), { code: 'KMESH_ERRNO', errno: 22 });
  });

  t.test('diffs touch only what changed', async (t) => {
    t.same(await dp.setRemoteCidrs(CIDRS), { added: 0, changed: 0, removed: 0 });
    t.same(await dp.setRemoteCidrs(['10.244.2.0/24', '10.244.7.0/24']), { added: 1, changed: 0, removed: 4 });
    t.equal((await enc(ipFrame('10.244.0.5', '10.244.1.9'))).mark, 0, 'removed CIDR no longer marks');
    t.equal((await enc(ipFrame('10.244.0.5', '10.244.7.9'))).mark, 0xe0, 'added CIDR marks');
    const big = Array.from({ length: 1000 }, (_, i) => `10.${100 + (i >> 8)}.${i & 255}.0/24`);
    t.same(await dp.setRemoteCidrs(big), { added: 1000, changed: 0, removed: 2 });
    t.equal((await dp.stats()).remoteCidrEntries, 1000);
    t.same(await dp.setPeers(new Map([['198.18.0.2', 2]])), { added: 0, changed: 1, removed: 2 });
  });

  t.test('a second process reuses the pinned maps and programs', async (t) => {
    const again = new BpfDatapath();
    await again.load({ bpffsRoot: root, objDir: OBJ_DIR });
    t.same(again.programIds(), dp.programIds(), 'unchanged programs are adopted, not reloaded');
    t.equal((await again.stats()).remoteCidrEntries, 1000, 'map contents survive');
    t.same(await again.mssClamp(), { ipv4: 1406, ipv6: 1366 }, 'the MSS clamp survives');
    t.equal((await again.testRun('tc_mark_decrypt', ipFrame('198.18.0.2', '198.18.0.1', PROTO_ESP))).mark, 0x200d0);
    await t.rejects(again.load({ bpffsRoot: `${root}-elsewhere` }), /already loaded at/);
    again.close();
  });

  t.test('bpftool finds the names', (t) => {
    const ids = dp.programIds();
    const prog = JSON.parse(run('bpftool', ['-j', 'prog', 'show', 'id', String(ids.encrypt)])) as { name: string };
    t.equal(prog.name, 'tc_mark_encrypt');
    const pinned = JSON.parse(run('bpftool', ['-j', 'prog', 'show', 'pinned', `${root}/tc/tc_mark_decrypt`])) as {
      name: string;
    };
    t.equal(pinned.name, 'tc_mark_decrypt');
    const map = JSON.parse(run('bpftool', ['-j', 'map', 'show', 'pinned', `${root}/map/km_nodeinfo`])) as {
      name: string;
      type: string;
    };
    t.match(map, { name: 'km_nodeinfo', type: 'lpm_trie' });
    const dump = run('bpftool', ['map', 'dump', 'pinned', `${root}/map/km_ipsec_peers`]);
    t.match(dump, /"family": 2/, 'BTF gives the dump its field names');
    t.match(dump, /"value": 2/);
    t.end();
  });

  t.test('uninstall removes every pin of ours', async (t) => {
    await dp.uninstall();
    t.throws(() => run('ls', [root]), /No such file/);
    await t.rejects(dp.stats(), /not loaded/);
  });
});

t.test(
  'objects missing from the object directory: a one-line error naming the file, nothing pinned',
  { skip },
  async (t) => {
    const empty = mkdtempSync(path.join(os.tmpdir(), 'kmt-dp-noobj-'));
    const missingRoot = privateBpffsRoot('noobj');
    const dp = new BpfDatapath();
    t.teardown(() => {
      rmSync(empty, { recursive: true, force: true });
      rmSync(missingRoot, { recursive: true, force: true });
    });
    await t.rejects(dp.load({ bpffsRoot: missingRoot, objDir: empty }), {
      message: `BPF object ${path.join(empty, 'tc_mark_encrypt.o')} is missing (in a checkout, build it with: npm run build:bpf)`,
    });
    t.same(
      existsSync(path.join(missingRoot, 'tc')) ? readdirSync(path.join(missingRoot, 'tc')) : [],
      [],
      'no program pinned',
    );
    t.same(
      existsSync(path.join(missingRoot, 'map')) ? readdirSync(path.join(missingRoot, 'map')) : [],
      [],
      'no map pinned',
    );
  },
);
