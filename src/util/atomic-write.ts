// Replaces a file's content atomically and durably: the bytes go to a temporary file in the same directory, are
// flushed to disk (fsync), and the temporary file is renamed over the target, whose directory is then flushed so
// the rename itself survives a crash. A reader sees the old content or the new, never a part; after a crash the
// file holds one of them. The temporary name is hidden and unique (dot, pid, random), so watchers of *.json files
// and concurrent writers never trip over it, and it is removed when anything fails.
import { randomUUID } from 'node:crypto';
import { promises as fs } from 'node:fs';
import path from 'node:path';

export interface AtomicWriteOptions {
  /** Permission bits of the file; default 0o644. */
  mode?: number;
  /** Create the directory (and missing parents) with these permission bits first; default: it must exist. */
  dirMode?: number;
}

export async function writeFileAtomic(
  target: string,
  content: string | Uint8Array,
  options: AtomicWriteOptions = {},
): Promise<void> {
  const dir = path.dirname(target);
  if (options.dirMode !== undefined) await fs.mkdir(dir, { recursive: true, mode: options.dirMode });
  const mode = options.mode ?? 0o644;
  const temp = path.join(dir, `.${path.basename(target)}.${process.pid}.${randomUUID()}.tmp`);
  try {
    const file = await fs.open(temp, 'wx', mode);
    try {
      await file.chmod(mode); // the umask may have narrowed the mode given to open()
      await file.writeFile(content);
      await file.sync();
    } finally {
      await file.close();
    }
    await fs.rename(temp, target);
  } catch (err) {
    await fs.rm(temp, { force: true });
    throw err;
  }
  const dirHandle = await fs.open(dir, 'r');
  try {
    await dirHandle.sync();
  } finally {
    await dirHandle.close();
  }
}
