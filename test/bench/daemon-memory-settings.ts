// The daemon's memory settings (bin/heap-settings.js) for the benches that measure its code: a bench started
// without them starts itself again with them, as the daemon's launcher (bin/kmesh-daemon.js) starts the daemon,
// so its figures are the product's.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export interface HeapSettings {
  LAUNCH_ENV: Readonly<Record<string, string>>;
  LAUNCH_FLAGS: readonly string[];
  RUNTIME_FLAGS: readonly string[];
  applyRuntimeFlags: () => void;
}

/** The repository root (this file runs from test/bench or dist/test/bench). */
function repoRoot(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  while (!fs.existsSync(path.join(dir, 'bin', 'heap-settings.js'))) {
    const up = path.dirname(dir);
    if (up === dir) throw new Error('bin/heap-settings.js not found above this file');
    dir = up;
  }
  return dir;
}

/** bin/heap-settings.js. */
export function heapSettings(): HeapSettings {
  return createRequire(import.meta.url)(path.join(repoRoot(), 'bin', 'heap-settings.js')) as HeapSettings;
}

/**
 * Runs this program again in a node with the daemon's launch flags and environment when this one lacks them
 * (resolves with its exit code), else applies the runtime flags and resolves undefined: the caller then runs here.
 */
export function underDaemonMemorySettings(): Promise<number | undefined> {
  const settings = heapSettings();
  const missing = settings.LAUNCH_FLAGS.filter((f) => !process.execArgv.includes(f));
  const envMissing = Object.entries(settings.LAUNCH_ENV).filter(([k, v]) => process.env[k] !== v);
  if (missing.length === 0 && envMissing.length === 0) {
    settings.applyRuntimeFlags();
    return Promise.resolve(undefined);
  }
  const argv = [...missing, ...process.execArgv, ...process.argv.slice(1)];
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, argv, { stdio: 'inherit', env: { ...process.env, ...settings.LAUNCH_ENV } });
    child.on('error', reject);
    child.on('close', (code) => resolve(code ?? 1));
  });
}

/** The settings this process runs with, for a bench's first line. */
export function describeMemorySettings(): string {
  const settings = heapSettings();
  const env = Object.keys(settings.LAUNCH_ENV).map((k) => `${k}=${process.env[k] ?? ''} `);
  return `${env.join('')}node ${process.execArgv.join(' ')} (+ ${settings.RUNTIME_FLAGS.join(' ')} at run time; the daemon's memory settings: bin/heap-settings.js)`;
}
