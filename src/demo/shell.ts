// Adapter for the demo and the end-to-end suites: runs commands (optionally inside a network namespace via
// nsenter, which keeps /sys/fs/bpf visible, unlike `ip netns exec`) and returns their output.
import { spawn } from 'node:child_process';
import { firstLine } from '../util/first-line.js';

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

export function run(
  cmd: string,
  args: readonly string[],
  opts: { netns?: string; input?: string; timeoutMs?: number } = {},
): Promise<RunResult> {
  const [file, argv] = opts.netns
    ? ['nsenter', [`--net=/run/netns/${opts.netns}`, '--', cmd, ...args]]
    : [cmd, [...args]];
  return new Promise((resolve, reject) => {
    const child = spawn(file, argv, { stdio: [opts.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout?.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = opts.timeoutMs
      ? setTimeout(() => {
          if (child.pid !== undefined) process.kill(child.pid, 'SIGKILL');
        }, opts.timeoutMs)
      : undefined;
    child.on('error', reject);
    child.on('close', (code, signal) => {
      if (timer) clearTimeout(timer);
      resolve({ code: code ?? (signal ? 128 : 1), stdout, stderr });
    });
    if (opts.input !== undefined) {
      child.stdin?.on('error', () => undefined);
      child.stdin?.end(opts.input);
    }
  });
}

/** Runs and throws a one-line error (command + first stderr line) when it fails. */
export async function runOk(
  cmd: string,
  args: readonly string[],
  opts: { netns?: string; input?: string; timeoutMs?: number } = {},
): Promise<string> {
  const r = await run(cmd, args, opts);
  if (r.code !== 0) {
    const where = opts.netns ? ` (netns ${opts.netns})` : '';
    const why = firstLine(r.stderr.trim() || r.stdout.trim());
    throw new Error(`${cmd} ${args.join(' ')}${where} exited ${r.code}: ${why}`);
  }
  return r.stdout;
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Polls `cond` until it holds or `timeoutMs` passes; the error names `what`. */
export async function waitFor(
  what: string,
  cond: () => Promise<boolean> | boolean,
  timeoutMs: number,
  everyMs = 200,
): Promise<void> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    if (await cond()) return;
    if (Date.now() > end) throw new Error(`timed out after ${Math.round(timeoutMs / 1000)} s waiting for ${what}`);
    await sleep(everyMs);
  }
}
