// The bpffs verdict from two mount tables: the same bpffs instance (device number) seen by PID 1 is shared; one
// only we see (a fresh bpffs under `ip netns exec`'s remounted /sys) is private. Lines are real mountinfo format.
import t from 'tap';
import { bpffsScope, mountOf, parseMountinfo } from '../../src/daemon/bpffs-scope.js';

const HOST = [
  '22 1 254:1 / / rw,relatime shared:1 - ext4 /dev/vda1 rw',
  '23 22 0:21 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw',
  '45 23 0:40 / /sys/fs/bpf rw,relatime shared:20 - bpf bpf rw,mode=700',
  '46 22 0:41 / /srv/my\\040store rw,relatime shared:21 - bpf bpf rw',
].join('\n');

/** What a process under `ip netns exec X` sees after start_kmesh.sh mounted bpffs on the fresh /sys. */
const NETNS_EXEC = [
  '300 299 254:1 / / rw,relatime - ext4 /dev/vda1 rw',
  '301 300 0:60 / /sys rw,relatime - sysfs X rw',
  '302 301 0:61 / /sys/fs/bpf rw,relatime - bpf bpf rw',
].join('\n');

t.test('parseMountinfo reads device, mount point (unescaped) and type; skips junk', (t) => {
  const entries = parseMountinfo(`${HOST}\nnot a mountinfo line\n`);
  t.same(entries[2], { dev: '0:40', mountPoint: '/sys/fs/bpf', fsType: 'bpf' });
  t.same(entries[3], { dev: '0:41', mountPoint: '/srv/my store', fsType: 'bpf' });
  t.equal(entries.length, 4);
  t.end();
});

t.test('mountOf picks the deepest mount above a path, the last one stacked on a mount point', (t) => {
  const entries = parseMountinfo(`${HOST}\n47 45 0:50 / /sys/fs/bpf rw - bpf bpf rw`);
  t.equal(mountOf(entries, '/sys/fs/bpf/node-1/x')?.dev, '0:50', 'the mount on top');
  t.equal(mountOf(entries, '/sys/fs/bpfx')?.fsType, 'sysfs', 'a prefix of the name is not a parent');
  t.equal(mountOf(entries, '/etc')?.mountPoint, '/');
  t.end();
});

t.test('shared, private, not a bpffs', (t) => {
  const host = parseMountinfo(HOST);
  t.same(bpffsScope(host, host, '/sys/fs/bpf/node-1'), { kind: 'shared', mountPoint: '/sys/fs/bpf' });
  t.same(bpffsScope(parseMountinfo(NETNS_EXEC), host, '/sys/fs/bpf'), { kind: 'private', mountPoint: '/sys/fs/bpf' });
  const bindOfHost = '400 300 0:40 / /sys/fs/bpf rw - bpf bpf rw'; // a container's bind mount of the host bpffs
  t.same(bpffsScope(parseMountinfo(`${NETNS_EXEC}\n${bindOfHost}`), host, '/sys/fs/bpf/x'), {
    kind: 'shared',
    mountPoint: '/sys/fs/bpf',
  });
  t.same(bpffsScope(host, host, '/var/lib/x'), { kind: 'not-bpffs', mountPoint: '/', fsType: 'ext4' });
  t.equal(bpffsScope([], host, '/sys/fs/bpf').kind, 'unknown');
  t.end();
});
