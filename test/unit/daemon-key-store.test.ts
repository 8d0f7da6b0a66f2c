// The key history file under --state-dir (src/daemon/key-store.ts) on a real filesystem: round trip, permission
// bits of the file and the directory it creates, no history vs an unreadable one, and removal.
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import t, { type Test } from 'tap';
import { keyStatePath, loadKeyState, removeKeyState, saveKeyState } from '../../src/daemon/key-store.js';

async function stateDir(t: Test): Promise<string> {
  const base = await fs.mkdtemp(path.join(os.tmpdir(), 'kmt-keys-'));
  t.teardown(() => fs.rm(base, { recursive: true, force: true }));
  return path.join(base, 'run', 'kmesh-ipsec');
}

const saved = { version: 1, keys: [{ spi: 1, aeadKey: Buffer.alloc(36, 7).toString('base64') }] };

t.test('save then load gives the same history; keys.json is 0600 in a 0700 directory', async (t) => {
  const dir = await stateDir(t);
  t.equal(keyStatePath(dir), path.join(dir, 'keys.json'));
  await saveKeyState(dir, saved);
  t.same(await loadKeyState(dir), saved);
  t.equal((await fs.stat(keyStatePath(dir))).mode & 0o777, 0o600);
  t.equal((await fs.stat(dir)).mode & 0o777, 0o700);
  await saveKeyState(dir, { ...saved, keys: [] });
  t.same(await loadKeyState(dir), { ...saved, keys: [] }, 'a second save replaces the first');
  t.same(await fs.readdir(dir), ['keys.json'], 'nothing else in the directory');
});

t.test('no file is no history; an unreadable file is an error', async (t) => {
  const dir = await stateDir(t);
  t.equal(await loadKeyState(dir), undefined, 'directory missing');
  await fs.mkdir(dir, { recursive: true });
  t.equal(await loadKeyState(dir), undefined, 'file missing');
  await fs.writeFile(keyStatePath(dir), '{"version":1,');
  await t.rejects(loadKeyState(dir), SyntaxError, 'truncated JSON');
  await fs.rm(keyStatePath(dir));
  await fs.mkdir(keyStatePath(dir));
  await t.rejects(loadKeyState(dir), { code: 'EISDIR' }, 'not a file');
});

t.test('remove deletes the history once', async (t) => {
  const dir = await stateDir(t);
  await saveKeyState(dir, saved);
  t.equal(await removeKeyState(dir), true);
  t.equal(await loadKeyState(dir), undefined);
  t.equal(await removeKeyState(dir), false, 'nothing left to remove');
});
