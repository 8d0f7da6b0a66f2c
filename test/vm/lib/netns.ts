// Running programs inside a named network namespace (/run/netns/NAME) on the host or in the guest.
// Uses `nsenter --net=` rather than `ip netns exec`, which remounts /sys and hides /sys/fs/bpf.
// Long-running helpers (tcpdump, traffic agents) are tracked so a failed test can end them by PID.
import { spawn, type ChildProcess } from 'node:child_process';

export interface ExecResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** The argv that runs `argv` in `netns` (or as is when netns is undefined: the caller's namespace). */
function inNetns(netns: string | undefined, argv: readonly string[]): string[] {
  return netns === undefined ? [...argv] : ['nsenter', `--net=/run/netns/${netns}`, '--', ...argv];
}

/** Runs a command to completion; never throws for a non-zero exit (see execOk). */
export function exec(
  netns: string | undefined,
  argv: readonly string[],
  options: { input?: string; timeoutMs?: number } = {},
): Promise<ExecResult> {
  const full = inNetns(netns, argv);
  return new Promise((resolve, reject) => {
    const child = spawn(full[0]!, full.slice(1), {
      stdio: [options.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout?.on('data', (c: Buffer) => (stdout += c.toString('utf8')));
    child.stderr?.on('data', (c: Buffer) => (stderr += c.toString('utf8')));
    const timer =
      options.timeoutMs === undefined
        ? undefined
        : setTimeout(() => {
            if (child.pid !== undefined) process.kill(child.pid, 'SIGKILL');
            stderr += `\n(killed after ${options.timeoutMs} ms)`;
          }, options.timeoutMs);
    child.once('error', (err) => {
      if (timer) clearTimeout(timer);
      reject(new Error(`cannot run ${full.join(' ')}: ${err.message}`));
    });
    child.once('close', (code, signal) => {
      if (timer) clearTimeout(timer);
      resolve({ code: code ?? (signal ? 128 : 1), stdout, stderr });
    });
    if (child.stdin) {
      // A command that exits without reading its input must not turn into an EPIPE crash here.
      child.stdin.on('error', () => undefined);
      child.stdin.end(options.input);
    }
  });
}

/** Runs a command and returns its stdout; throws one line naming the command, exit code and stderr. */
export async function execOk(
  netns: string | undefined,
  argv: readonly string[],
  options: { input?: string; timeoutMs?: number } = {},
): Promise<string> {
  const r = await exec(netns, argv, options);
  if (r.code !== 0) {
    const where = netns === undefined ? '' : ` (netns ${netns})`;
    const why = r.stderr.trim().split('\n').join(' | ');
    throw new Error(`${argv.join(' ')}${where} exited with ${r.code}: ${why}`);
  }
  return r.stdout;
}

const background = new Set<ChildProcess>();

/** Starts a long-running command in `netns`; it is ended by stopBackground()/stopAllBackground(). */
export function spawnIn(netns: string | undefined, argv: readonly string[]): ChildProcess {
  const full = inNetns(netns, argv);
  const child = spawn(full[0]!, full.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] });
  background.add(child);
  child.once('close', () => background.delete(child));
  return child;
}

function running(child: ChildProcess): boolean {
  return child.exitCode === null && child.signalCode === null;
}

/** Sends `signal` to the process (by PID), waits up to graceMs for it to end, then SIGKILLs it. */
export async function stopBackground(
  child: ChildProcess,
  signal: NodeJS.Signals = 'SIGTERM',
  graceMs = 5000,
): Promise<void> {
  if (!running(child) || child.pid === undefined) return;
  const closed = new Promise<void>((resolve) => child.once('close', () => resolve()));
  process.kill(child.pid, signal);
  const timer = setTimeout(() => {
    if (running(child) && child.pid !== undefined) process.kill(child.pid, 'SIGKILL');
  }, graceMs);
  await closed;
  clearTimeout(timer);
}

/** Ends every background process started through spawnIn that is still running. */
export async function stopAllBackground(): Promise<void> {
  await Promise.all([...background].map((c) => stopBackground(c, 'SIGKILL', 1000)));
}
