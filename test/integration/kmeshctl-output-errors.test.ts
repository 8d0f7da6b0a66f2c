// kmeshctl as a process whose standard output fails: a reader that goes away early (`kmeshctl --help | head -1`)
// is not an error and prints no stack trace; a full disk (`> /dev/full`) after a rotation exits 3 with one line
// saying the command itself succeeded (and the rotation is in the store).
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const bin = path.join(root, 'bin', 'kmeshctl.js');
const built = fs.existsSync(path.join(root, 'dist', 'src', 'cli', 'kmeshctl.js'));
const skip = built ? {} : { skip: 'dist/ not built: npm run build:ts' };

t.test('a reader that closes early (| head -1): exit 0, no stack trace', skip, async (t) => {
  const child = spawn('node', [bin, '--help'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
  // Read one chunk, then go away like `head -1`.
  await new Promise<void>((resolve) => child.stdout.once('data', () => resolve()));
  child.stdout.destroy();
  const code = await new Promise<number | null>((resolve) => child.once('close', resolve));
  t.equal(code, 0);
  t.equal(stderr, '', 'nothing on stderr');
});

t.test('stdout on a full disk after a rotation: exit 3, one line, the change was made', skip, (t) => {
  const store = t.testdir();
  t.equal(spawnSync('node', [bin, `--store=dir:${store}`, 'secret', 'create'], { encoding: 'utf8' }).status, 0);
  const out = fs.openSync('/dev/full', 'w');
  const r = spawnSync('node', [bin, `--store=dir:${store}`, 'secret', 'create'], {
    stdio: ['ignore', out, 'pipe'],
    encoding: 'utf8',
  });
  fs.closeSync(out);
  t.equal(r.status, 3, 'exit 3: succeeded, output lost');
  t.equal(r.stderr, 'error: cannot write the result to standard output (ENOSPC); the command itself succeeded\n');
  const payload = JSON.parse(fs.readFileSync(path.join(store, 'kmesh-ipsec', 'ipSec'), 'utf8')) as { spi: number };
  t.equal(payload.spi, 2, 'the rotation happened');
  t.end();
});
