// File descriptors of BPF objects are owned by BpfFd objects (native/bpf_fd.h), never passed as numbers (root,
// private bpffs root): close() is idempotent and really closes the kernel fd, a closed or foreign handle is refused,
// a close() racing an operation in flight does not break that operation, an unreachable handle is closed by the
// garbage collector, option objects are required where there used to be positional arguments, and a datapath that
// loads, syncs, tests and closes leaves no BPF fd of ours open.
import { readdirSync, readlinkSync } from 'node:fs';
import v8 from 'node:v8';
import vm from 'node:vm';
import t from 'tap';

import { BpfDatapath } from '../../src/datapath/bpf-datapath.js';
import { nativeBpf, type BpfFd } from '../../src/datapath/native-bpf.js';
import { ipFrame } from './lib/packets.js';
import { kernelSkipReason, OBJ_DIR, privateBpffsRoot } from './lib/kernel.js';

const skip = kernelSkipReason();
const root = privateBpffsRoot('fd');

/** What /proc/self/fd/N points at, or undefined when N is not open. */
function fdTarget(n: number): string | undefined {
  try {
    return readlinkSync(`/proc/self/fd/${n}`);
  } catch {
    return undefined;
  }
}

/** Open fds of this process that are BPF maps, programs or links. */
function bpfFds(): number[] {
  return readdirSync('/proc/self/fd')
    .map(Number)
    .filter((n) => /^anon_inode:bpf[-_](map|prog|link)$/.test(fdTarget(n) ?? ''));
}

function collectGarbage(): void {
  v8.setFlagsFromString('--expose-gc');
  (vm.runInNewContext('gc') as () => void)();
}

t.test('BpfFd owns its kernel fd', { skip }, async (t) => {
  const bpf = nativeBpf();
  const dp = new BpfDatapath();
  t.teardown(() => dp.uninstall().catch(() => undefined));
  await dp.load({ bpffsRoot: root, objDir: OBJ_DIR });
  const mapPath = `${root}/map/km_ipsec_peers`;

  t.test('close() closes the fd once; a closed or foreign handle is refused', async (t) => {
    const fd = await bpf.getPinned(mapPath);
    t.ok(fd instanceof bpf.Fd, 'a BpfFd');
    const n = fd.fd;
    t.match(fdTarget(n), /^anon_inode:bpf-map$/, 'the number is an open map fd');
    t.equal(fd.closed, false);
    fd.close();
    t.equal(fdTarget(n), undefined, 'closed in the kernel');
    t.equal(fd.fd, -1);
    t.equal(fd.closed, true);
    fd.close();
    t.pass('a second close() is a no-op');
    t.throws(() => bpf.mapInfo(fd), { name: 'TypeError', message: 'map fd is closed' });
    await t.rejects(async () => bpf.mapDump(fd), { name: 'TypeError', message: 'map is closed' });
    t.throws(() => bpf.mapInfo(n as unknown as BpfFd), { name: 'TypeError', message: 'map fd must be a BpfFd' });
    t.throws(() => new (bpf.Fd as unknown as new (n: number) => BpfFd)(n), /made by the addon/);
  });

  t.test('close() while an operation runs on the fd waits for that operation', async (t) => {
    const fd = await bpf.getPinned(mapPath);
    const n = fd.fd;
    const dump = bpf.mapDump(fd);
    const info = bpf.mapInfo(fd);
    fd.close();
    t.equal(fd.closed, true, 'the handle is closed at once');
    t.same(await dump, [], 'the dump in flight still reads the map');
    t.equal(info.name, 'km_ipsec_peers');
    t.notMatch(fdTarget(n) ?? '', /^anon_inode:bpf-map$/, 'and the fd is gone afterwards');
  });

  t.test('an unreachable handle is closed by the garbage collector', async (t) => {
    const before = bpfFds().length;
    const open = async (): Promise<number> => (await bpf.getPinned(mapPath)).fd;
    const numbers = [await open(), await open(), await open()];
    t.equal(bpfFds().length, before + 3);
    for (let i = 0; i < 20 && numbers.some((n) => fdTarget(n) !== undefined); i++) {
      collectGarbage();
      await new Promise((resolve) => setImmediate(resolve));
    }
    t.equal(bpfFds().length, before, 'all three closed without close()');
  });

  t.test('addon calls take option objects, not positional arguments', async (t) => {
    const prog = await bpf.getPinned(`${root}/tc/tc_mark_encrypt`);
    t.teardown(() => prog.close());
    t.throws(() => bpf.clsactAttach(1 as never), {
      name: 'TypeError',
      message: 'clsactAttach options must be an object',
    });
    t.throws(() => bpf.clsactAttach({ ifindex: 1, prog, label: 'x', replace: 'yes' as never }), {
      message: 'option replace must be a boolean',
    });
    t.throws(() => bpf.tcxAttach({ ifindex: 1, prog: 3 as never, label: 'x' }), {
      message: 'option prog must be a BpfFd',
    });
    t.throws(() => bpf.mapCreate({ type: 2, name: 'x', keySize: 4, valueSize: 4 } as never), {
      message: 'option maxEntries must be a number',
    });
    const run = await bpf.testRun(prog, { packet: ipFrame('10.0.0.1', '10.0.0.2') });
    t.equal(run.mark, 0, 'testRun with defaults for mark and repeat');
  });

  t.test('a datapath leaves no BPF fd open after close()', async (t) => {
    const before = bpfFds();
    const other = new BpfDatapath();
    await other.load({ bpffsRoot: root, objDir: OBJ_DIR });
    t.ok(bpfFds().length > before.length, 'load holds program and map fds');
    await other.setRemoteCidrs(['10.244.1.0/24', 'fd00:1::/64']);
    await other.setPeers(new Map([['198.18.0.2', 2]]));
    await other.stats();
    await other.testRun('tc_mark_encrypt', ipFrame('10.0.0.1', '10.244.1.2'));
    await other.attachments();
    other.close();
    t.same(bpfFds(), before, 'every fd it opened is closed');
    other.close();
    t.pass('close() twice is fine');
  });
});
