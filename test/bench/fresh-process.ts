// Runs a bench program again in a fresh node, with this process's flags and environment, and reads the JSON line
// it prints last: for figures of code that has not run before in its process (a daemon's first plan), which no
// second measurement in one process can give.
import { spawn } from 'node:child_process';

/** Runs `script` with `args` in a fresh node (this process's flags, plus `extraFlags`); its last line, parsed. */
export function inFreshProcess<T>(
  script: string,
  args: readonly string[],
  extraFlags: readonly string[] = [],
): Promise<T> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [...process.execArgv, ...extraFlags, script, ...args], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let out = '';
    child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString('utf8')));
    child.on('error', reject);
    child.on('close', (code) => {
      const line = out.trim().split('\n').at(-1) ?? '';
      if (code !== 0) reject(new Error(`${script} ${args.join(' ')} exited ${String(code)}: ${line}`));
      else resolve(JSON.parse(line) as T);
    });
  });
}
