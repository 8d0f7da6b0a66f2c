// --store parsing, shared by kmeshctl and the daemon: both accept the same values and refuse the same
// mistakes with the same one-line message.
import t from 'tap';
import { parseStoreLocation } from '../../src/model/store-location.js';
import { parseStore as daemonParseStore } from '../../src/daemon/flags.js';

t.test('kubernetes and dir:PATH', (t) => {
  t.same(parseStoreLocation('kubernetes'), { kind: 'kubernetes' });
  t.same(parseStoreLocation('dir:/srv/kmesh/'), { kind: 'dir', root: '/srv/kmesh' });
  t.same(parseStoreLocation('dir:store/../kmesh', '/work'), { kind: 'dir', root: '/work/kmesh' });
  t.end();
});

t.test('mistakes: one line each, the same wording in the daemon', (t) => {
  for (const [value, message] of [
    ['etcd', '--store: expected "kubernetes" or "dir:PATH", got "etcd"'],
    ['Kubernetes', '--store: expected "kubernetes" or "dir:PATH", got "Kubernetes"'],
    ['dir:', '--store: dir: needs a path, e.g. --store dir:/var/lib/kmesh-store'],
    ['dir:  ', '--store: dir: needs a path, e.g. --store dir:/var/lib/kmesh-store'],
  ] as const) {
    t.throws(() => parseStoreLocation(value), { message }, value);
    t.throws(() => daemonParseStore(value), { message }, `daemon ${value}`);
  }
  t.end();
});
