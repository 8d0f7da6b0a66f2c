// Where the kernel-test VM keeps things: the repository root (found from this module, in test/ or dist/test/),
// the git-ignored cache of guest kernels and run directories, and the guest-side scripts.
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

let cachedRoot: string | undefined;

/** The repository root: the nearest ancestor of this module holding this project's package.json. */
export function repoRoot(): string {
  if (cachedRoot !== undefined) return cachedRoot;
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const manifest = path.join(dir, 'package.json');
    if (
      existsSync(manifest) &&
      (JSON.parse(readFileSync(manifest, 'utf8')) as { name?: string }).name === 'kmesh-ipsec'
    ) {
      cachedRoot = dir;
      return dir;
    }
    const parent = path.dirname(dir);
    if (parent === dir) throw new Error(`no kmesh-ipsec package.json above ${fileURLToPath(import.meta.url)}`);
    dir = parent;
  }
}

/** Cache of the VM harness (git-ignored): kernels/<name>/, runs/<id>/, apt/. */
export function vmCacheDir(root = repoRoot()): string {
  return path.join(root, '.cache', 'vm');
}

/** Directory of the guest-side scripts (init.sh packed into the initramfs, prepare.sh run in the chroot). */
export function guestScriptsDir(root = repoRoot()): string {
  return path.join(root, 'test', 'vm', 'guest');
}
