// The remote-CIDR index in the kernel (root, private bpffs root): tc_mark_encrypt and tc_mark_decrypt answer
// "inside a remote pod CIDR?" exactly like plain CIDR matching, both through the installed index and through the
// km_nodeinfo LPM fallback (slot emptied with bpftool); an unchanged CIDR set writes nothing, a changed one swaps
// in a new frozen inner map and the old one is freed; an index too large for its capacity is not installed and
// the trie answers; a restarted process adopts the installed index; zero tails and tail records of every length.
import t from 'tap';
import { BpfDatapath } from '../../src/datapath/bpf-datapath.js';
import {
  parseCidrStrict as parseCidr,
  prefixMatches,
  type Family,
  type ParsedCidr,
} from '../../src/model/ip-address.js';
import {
  CIDR_INDEX_CAPACITY,
  CIDR_POOL_SIZE,
  cidrIndexUse,
  compileCidrIndex,
  encodeCidrPool,
} from '../../src/datapath/cidr-index.js';
import { nativeBpf, withFd } from '../../src/datapath/native-bpf.js';
import { ipFrame } from './lib/packets.js';
import { addrText, cidrText, probe, randomCidr, rng } from '../fakes/cidr-samples.js';
import { kernelSkipReason, OBJ_DIR, privateBpffsRoot, run } from './lib/kernel.js';

const skip = kernelSkipReason();
const root = privateBpffsRoot('cidx');
const bpf = skip ? undefined : nativeBpf();

/** The inner map id in the km_cidr_index slot, or 0 when it is empty. */
async function slotMapId(): Promise<number> {
  return withFd(bpf!.getPinned(`${root}/map/km_cidr_index`), async (fd) => {
    const v = await bpf!.mapLookup(fd, Buffer.alloc(4));
    return v ? v.readUInt32LE(0) : 0;
  });
}

function emptySlotWithBpftool(): void {
  run('bpftool', ['map', 'delete', 'pinned', `${root}/map/km_cidr_index`, 'key', '0', '0', '0', '0']);
}

async function mapExists(id: number): Promise<boolean> {
  try {
    (await bpf!.mapFdById(id)).close();
    return true;
  } catch {
    return false;
  }
}

t.test('remote-CIDR index in the kernel', { skip }, async (t) => {
  const dp = new BpfDatapath();
  t.teardown(async () => {
    await dp.uninstall().catch(() => undefined);
  });
  await dp.load({ bpffsRoot: root, objDir: OBJ_DIR });

  /** Disagreements between both programs and plain CIDR matching, over random addresses near the CIDRs. */
  async function disagreements(cidrs: readonly ParsedCidr[], rnd: (n: number) => number, n: number): Promise<number> {
    let wrong = 0;
    for (let i = 0; i < n; i++) {
      const family: Family = rnd(2) === 0 ? 4 : 6;
      const addr = probe(rnd, cidrs, family);
      const inside = cidrs.some((c) => c.family === family && prefixMatches(c.bytes, addr, c.prefixLen));
      const other = family === 4 ? '192.0.2.1' : '2001:db8::1';
      const enc = await dp.testRun('tc_mark_encrypt', ipFrame(other, addrText(family, addr)));
      const dec = await dp.testRun('tc_mark_decrypt', ipFrame(addrText(family, addr), other), { mark: 0xd0 });
      if (enc.mark !== (inside ? 0xe0 : 0) || dec.mark !== (inside ? 0xd0 : 0)) wrong++;
    }
    return wrong;
  }

  t.test('index and LPM fallback both agree with CIDR matching', async (t) => {
    const rnd = rng(99);
    let indexWrong = 0;
    let lpmWrong = 0;
    for (let set = 0; set < 12; set++) {
      const cidrs = Array.from({ length: 1 + rnd(10) }, () => randomCidr(rnd, rnd(2) === 0 ? 4 : 6));
      await dp.setRemoteCidrs(cidrs.map(cidrText));
      t.not(await slotMapId(), 0, `set ${set}: index installed`);
      indexWrong += await disagreements(cidrs, rng(set), 40);
      emptySlotWithBpftool();
      t.equal((await dp.stats()).cidrIndex, null, 'no index: stats say so');
      lpmWrong += await disagreements(cidrs, rng(set), 40);
    }
    t.equal(indexWrong, 0, 'through the index: 12 sets x 40 addresses, both programs');
    t.equal(lpmWrong, 0, 'through km_nodeinfo: the same addresses');
  });

  t.test('zero tails and records of every length answer in the kernel as in the model', async (t) => {
    // Beside a sibling that keeps the subtree from collapsing: each CIDR ends below the wide root with a zero tail
    // (or a record, with one bit set), 1..16 bits for IPv4, 1..112 for IPv6. Probes: the network, and the network
    // with each tail bit flipped in turn (the first half's and the second half's bits for IPv6).
    const shapes: ParsedCidr[][] = [];
    for (let len = 25; len <= 32; len++) {
      shapes.push([parseCidr(`10.1.0.0/${len}`), parseCidr('10.2.0.0/16')]);
      shapes.push([parseCidr(`10.1.0.${1 << (32 - len)}/${len}`), parseCidr('10.2.0.0/16')]);
    }
    for (const len of [33, 48, 63, 64, 65, 80, 96, 112, 127, 128]) {
      shapes.push([parseCidr(`fd00:1::/${len}`), parseCidr('fd00:2::/32')]);
    }
    let wrong = 0;
    let probes = 0;
    for (const cidrs of shapes) {
      await dp.setRemoteCidrs(cidrs.map(cidrText));
      const c = cidrs[0]!;
      for (let bit = -1; bit < c.bytes.length * 8; bit++) {
        const addr = Buffer.from(c.bytes);
        if (bit >= 0) addr[bit >> 3]! ^= 0x80 >> (bit & 7);
        const inside = cidrs.some((x) => prefixMatches(x.bytes, addr, x.prefixLen));
        const other = c.family === 4 ? '192.0.2.1' : '2001:db8::1';
        const enc = await dp.testRun('tc_mark_encrypt', ipFrame(other, addrText(c.family, addr)));
        if (enc.mark !== (inside ? 0xe0 : 0)) wrong++;
        probes++;
      }
    }
    t.equal(wrong, 0, `${probes} probes over ${shapes.length} sets`);
  });

  t.test('unchanged CIDRs write nothing; changed ones swap in a new frozen map and free the old', async (t) => {
    const cidrs = ['10.244.1.0/24', '10.244.2.0/24', 'fd00:10:244:1::/64'];
    await dp.setRemoteCidrs(cidrs);
    const first = await slotMapId();
    t.not(first, 0);
    t.same(await dp.setRemoteCidrs([...cidrs].reverse()), { added: 0, changed: 0, removed: 0 });
    t.equal(await slotMapId(), first, 'same CIDRs (any order): same inner map');
    const s = await dp.stats();
    const compiled = compileCidrIndex(cidrs);
    t.same(s.cidrIndex, cidrIndexUse(compiled.nodes.length, compiled.records.length), 'stats read the header');

    await withFd(bpf!.mapFdById(first), (inner) =>
      t.rejects(
        bpf!.mapApply(inner, [{ key: Buffer.alloc(4), value: Buffer.alloc(CIDR_POOL_SIZE) }]),
        { code: 'KMESH_ERRNO', errno: 1 },
        'the installed index is frozen against syscall writes (EPERM)',
      ),
    );
    const shown = JSON.parse(run('bpftool', ['-j', 'map', 'show', 'id', String(first)])) as { frozen?: number };
    t.equal(shown.frozen, 1, 'bpftool shows it frozen');

    await dp.setRemoteCidrs(['10.244.3.0/24']);
    const second = await slotMapId();
    t.not(second, first, 'a new inner map');
    t.equal((await dp.testRun('tc_mark_encrypt', ipFrame('10.0.0.1', '10.244.1.5'))).mark, 0, 'old CIDR gone');
    t.equal((await dp.testRun('tc_mark_encrypt', ipFrame('10.0.0.1', '10.244.3.5'))).mark, 0xe0, 'new CIDR');
    let freed = false;
    for (let i = 0; i < 50 && !freed; i++) {
      freed = !(await mapExists(first));
      if (!freed) await new Promise((r) => setTimeout(r, 100));
    }
    t.ok(freed, 'the replaced inner map is released by the kernel');
  });

  t.test('an index beyond its capacity is not installed and the trie answers', async (t) => {
    // Pairs of host routes differing in the last bit: each pair needs its own chain of about 14 nodes.
    const rnd = rng(5);
    const scattered: ParsedCidr[] = Array.from({ length: 300 }, () => {
      const bytes = Buffer.from(Array.from({ length: 16 }, () => rnd(256)));
      const twin = Buffer.from(bytes);
      twin[15]! ^= 1;
      return [bytes, twin];
    })
      .flat()
      .map((bytes) => ({ family: 6, bytes, prefixLen: 128, text: '' }));
    t.ok(compileCidrIndex(scattered).nodes.length > CIDR_INDEX_CAPACITY);
    await dp.setRemoteCidrs(scattered.map(cidrText));
    t.equal(await slotMapId(), 0, 'slot left empty');
    t.equal((await dp.stats()).cidrIndex, null);
    t.equal((await dp.stats()).remoteCidrEntries, 600, 'km_nodeinfo holds every CIDR');
    t.equal(await disagreements(scattered, rng(1), 60), 0, 'answers through km_nodeinfo');
    await dp.setRemoteCidrs(['10.244.9.0/24']);
    t.not(await slotMapId(), 0, 'a set that fits is indexed again');
  });

  t.test('the programs ask the index first and km_nodeinfo only without one', async (t) => {
    await dp.setRemoteCidrs(['10.244.5.0/24']);
    // Swap in, by hand, an index compiled for other CIDRs than km_nodeinfo holds: the programs must follow it.
    const other = compileCidrIndex(['10.99.0.0/16']);
    const pool = await bpf!.mapCreate({
      type: 2,
      name: 'kmt_cidr_pool',
      keySize: 4,
      valueSize: CIDR_POOL_SIZE,
      maxEntries: 1,
    });
    await withFd(bpf!.getPinned(`${root}/map/km_cidr_index`), async (outer) => {
      await bpf!.mapApply(pool, [{ key: Buffer.alloc(4), value: encodeCidrPool(other) }]);
      const value = Buffer.alloc(4);
      value.writeUInt32LE(pool.fd, 0);
      await bpf!.mapApply(outer, [{ key: Buffer.alloc(4), value }]);
    }).finally(() => pool.close());
    const mark = async (dst: string) => (await dp.testRun('tc_mark_encrypt', ipFrame('10.0.0.1', dst))).mark;
    t.equal(await mark('10.99.3.3'), 0xe0, 'the index answers');
    t.equal(await mark('10.244.5.3'), 0, 'km_nodeinfo is not asked while an index is installed');
    emptySlotWithBpftool();
    t.equal(await mark('10.99.3.3'), 0, 'without the index');
    t.equal(await mark('10.244.5.3'), 0xe0, 'km_nodeinfo answers');
    await dp.setRemoteCidrs(['10.244.5.0/24']);
    t.not(await slotMapId(), 0, 'the next sync installs the right index again');
    t.equal(await mark('10.99.3.3'), 0);
    t.equal(await mark('10.244.5.3'), 0xe0);
  });

  t.test('a /0 covers its whole family and nothing of the other', async (t) => {
    const mark = async (src: string, dst: string) => (await dp.testRun('tc_mark_encrypt', ipFrame(src, dst))).mark;
    await dp.setRemoteCidrs(['0.0.0.0/0']);
    t.equal(await mark('10.0.0.1', '203.0.113.9'), 0xe0);
    t.equal(await mark('fd00::1', '2001:db8::9'), 0);
    await dp.setRemoteCidrs(['::/0', '10.244.1.0/24']);
    t.equal(await mark('fd00::1', '2001:db8::9'), 0xe0);
    t.equal(await mark('10.0.0.1', '203.0.113.9'), 0);
    t.equal(await mark('10.0.0.1', '10.244.1.9'), 0xe0);
  });

  t.test('a restarted process adopts the installed index', async (t) => {
    const cidrs = ['10.244.4.0/24', 'fd00:10:244:4::/64'];
    await dp.setRemoteCidrs(cidrs);
    const id = await slotMapId();
    const again = new BpfDatapath();
    await again.load({ bpffsRoot: root, objDir: OBJ_DIR });
    t.equal((await again.testRun('tc_mark_encrypt', ipFrame('10.0.0.1', '10.244.4.7'))).mark, 0xe0, 'before any write');
    t.same(await again.setRemoteCidrs(cidrs), { added: 0, changed: 0, removed: 0 });
    t.equal(await slotMapId(), id, 'same set: the installed index is kept');
    again.close();
  });
});
