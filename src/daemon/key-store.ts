// Adapter: the key history file under --state-dir (keys.json, mode 0600, written atomically). It holds key
// material so a restart can keep serving peers still on an older SPI; it lives on tmpfs (/run) by default.
import fsp from 'node:fs/promises';
import path from 'node:path';
import { writeFileAtomic } from '../util/atomic-write.js';

export function keyStatePath(stateDir: string): string {
  return path.join(stateDir, 'keys.json');
}

/** The saved history, or undefined when there is none. Throws on an unreadable file. */
export async function loadKeyState(stateDir: string): Promise<unknown> {
  let text: string;
  try {
    text = await fsp.readFile(keyStatePath(stateDir), 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
  return JSON.parse(text) as unknown;
}

export async function saveKeyState(stateDir: string, saved: unknown): Promise<void> {
  await writeFileAtomic(keyStatePath(stateDir), JSON.stringify(saved) + '\n', { mode: 0o600, dirMode: 0o700 });
}

export async function removeKeyState(stateDir: string): Promise<boolean> {
  try {
    await fsp.rm(keyStatePath(stateDir));
    return true;
  } catch {
    return false;
  }
}
