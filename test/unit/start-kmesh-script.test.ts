// start_kmesh.sh checks the daemon's flags before it touches the host: a bad command line exits 2 with the
// daemon's one-line reason and mounts nothing, creates no bpffs directory.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const script = path.join(root, 'start_kmesh.sh');
const built = fs.existsSync(path.join(root, 'dist', 'src', 'daemon', 'main.js'));

t.test('bad flags: exit 2 before bpffs is mounted', { skip: built ? false : 'dist/ not built' }, (t) => {
  const bpf = path.join(t.testdir(), 'bpf');
  const r = spawnSync(script, ['--mode=turbo', `--bpf-fs-path=${bpf}`, '--node-name=n1'], { encoding: 'utf8' });
  if (fs.existsSync(bpf)) spawnSync('umount', [bpf]); // only if the check failed to stop it
  t.equal(r.status, 2, 'exit code 2 (bad command line)');
  t.match(r.stderr, /^kmesh-daemon: --mode: expected one of dual-engine, kernel-native, got "turbo"\n$/);
  t.notOk(fs.existsSync(bpf), 'no bpffs directory was created or mounted');
  t.end();
});

t.test('--help is answered without checks or mounts', { skip: built ? false : 'dist/ not built' }, (t) => {
  const r = spawnSync(script, ['--help'], { encoding: 'utf8' });
  t.equal(r.status, 0);
  t.match(r.stdout, /--check-flags/);
  t.end();
});
