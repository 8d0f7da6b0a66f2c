// writeFileAtomic (src/util/atomic-write.ts) on a real filesystem: content and permission bits (also under a narrow
// umask), the directory created on request, nothing left behind on success or failure, and concurrent writers that
// each leave a whole file, never a mix.
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import t, { type Test } from 'tap';
import { writeFileAtomic } from '../../src/util/atomic-write.js';

async function tempDir(t: Test): Promise<string> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'kmt-atomic-'));
  t.teardown(() => fs.rm(dir, { recursive: true, force: true }));
  return dir;
}

const modeOf = async (p: string): Promise<number> => (await fs.stat(p)).mode & 0o777;

t.test('writes the content with the given mode, replacing what was there', async (t) => {
  const dir = await tempDir(t);
  const file = path.join(dir, 'status.json');
  await writeFileAtomic(file, 'first\n');
  t.equal(await fs.readFile(file, 'utf8'), 'first\n');
  t.equal(await modeOf(file), 0o644, 'default mode');
  await writeFileAtomic(file, Buffer.from('second\n'), { mode: 0o600 });
  t.equal(await fs.readFile(file, 'utf8'), 'second\n');
  t.equal(await modeOf(file), 0o600, 'mode of the new file');
  t.same(await fs.readdir(dir), ['status.json'], 'no temporary file left');
});

t.test('the mode holds under a umask that would narrow it', async (t) => {
  const dir = await tempDir(t);
  const old = process.umask(0o077);
  t.teardown(() => process.umask(old));
  await writeFileAtomic(path.join(dir, 'x'), 'x', { mode: 0o644 });
  t.equal(await modeOf(path.join(dir, 'x')), 0o644);
});

t.test('dirMode creates the directory and its parents first; without it the directory must exist', async (t) => {
  const dir = await tempDir(t);
  const nested = path.join(dir, 'a', 'b');
  await t.rejects(writeFileAtomic(path.join(nested, 'keys.json'), '{}'), { code: 'ENOENT' });
  await writeFileAtomic(path.join(nested, 'keys.json'), '{}', { dirMode: 0o700 });
  t.equal(await fs.readFile(path.join(nested, 'keys.json'), 'utf8'), '{}');
  t.equal(await modeOf(nested), 0o700);
});

t.test('a failed rename leaves the target as it was and no temporary file', async (t) => {
  const dir = await tempDir(t);
  const target = path.join(dir, 'taken');
  await fs.mkdir(path.join(target, 'inside'), { recursive: true });
  await t.rejects(writeFileAtomic(target, 'data'));
  t.same((await fs.readdir(dir)).sort(), ['taken'], 'only the directory that was in the way');
  t.same(await fs.readdir(target), ['inside']);
});

t.test('concurrent writers: the file always holds one whole version', async (t) => {
  const dir = await tempDir(t);
  const file = path.join(dir, 'shared.json');
  const versions = Array.from({ length: 20 }, (_, i) => JSON.stringify({ writer: i, pad: 'x'.repeat(4096 * (i + 1)) }));
  await Promise.all(versions.map((v) => writeFileAtomic(file, v)));
  t.ok(versions.includes(await fs.readFile(file, 'utf8')), 'one complete version');
  t.same(await fs.readdir(dir), ['shared.json']);
});
