// Where the cluster's shared state lives, as `--store` names it for both kmeshctl and the daemon: the
// Kubernetes API (`kubernetes`) or a local directory with the layout of src/model/kmesh-names.ts (`dir:PATH`).

import path from 'node:path';

export type StoreLocation = { kind: 'kubernetes' } | { kind: 'dir'; root: string };

/** `--store` value → location; a relative PATH is resolved against `cwd`. Throws with a one-line message. */
export function parseStoreLocation(value: string, cwd: string = process.cwd()): StoreLocation {
  if (value === 'kubernetes') return { kind: 'kubernetes' };
  if (value.startsWith('dir:')) {
    const dir = value.slice('dir:'.length);
    if (dir.trim() === '') throw new Error('--store: dir: needs a path, e.g. --store dir:/var/lib/kmesh-store');
    return { kind: 'dir', root: path.resolve(cwd, dir) };
  }
  throw new Error(`--store: expected "kubernetes" or "dir:PATH", got ${JSON.stringify(value)}`);
}
