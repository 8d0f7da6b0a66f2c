// Runs one command as root inside a kernel-test VM: a Debian guest kernel under qemu TCG whose root is the
// host's / (read-only 9p) under a tmpfs overlay, so the guest sees this checkout, node, ip, tcpdump and
// bpftool at their usual paths. Returns the command's exit code, its output, the kernel console log and a
// results directory the guest wrote to ($KMESH_VM_RESULTS). Every run is bounded by a timeout; qemu is
// ended by its PID (and dies with this process through PR_SET_PDEATHSIG), so nothing is left behind.
// Each run keeps its files in .cache/vm/runs/<id>/ (console.log, output.log, qemu.log, xfer/).
// The guest has no network device unless `guestForward` asks for one forwarded address on host loopback
// (used to reach a control plane on the host, see lib/control-plane-host.ts).
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import {
  createWriteStream,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import path from 'node:path';
import { StringDecoder } from 'node:string_decoder';
import { kernelArtifacts, type KernelArtifacts, type VmKernel } from './lib/kernels.js';
import { guestCommandScript } from './lib/guest-command.js';
import { GUEST_NIC, QEMU_BINARY, qemuArgs, type GuestForward } from './lib/qemu-args.js';
import { guestScriptsDir, repoRoot, vmCacheDir } from './lib/paths.js';

export type { VmKernel } from './lib/kernels.js';
export { VM_KERNELS } from './lib/kernels.js';

export interface RunInVmOptions {
  kernel: VmKernel;
  /** Shell command (POSIX sh) run as root in the guest, in `cwd` (default: the repository root). */
  command: string;
  /** Upper bound for the whole run, boot included; qemu is killed when it fires. */
  timeoutMs: number;
  /** Extra guest environment. */
  env?: Readonly<Record<string, string>>;
  cwd?: string;
  /** Guest memory (default $KMESH_VM_MEMORY_MB or 1024). */
  memoryMb?: number;
  /** Receives the command's output as it arrives. */
  onOutput?: (text: string) => void;
  /** Gives the guest a NIC (GUEST_NIC, brought up by prepare.sh) whose only reachable address is this
   * forward to the host (qemu's restricted user network); without it the guest has no network device. */
  guestForward?: GuestForward;
  /** Files put on the xfer share before boot: name -> content; the guest reads them in /run/kmesh-vm/. */
  files?: Readonly<Record<string, string>>;
}

export interface VmRunResult {
  kernel: VmKernel;
  /** `uname -r` of the guest. */
  release: string;
  exitCode: number;
  /** The command's stdout and stderr, interleaved. */
  output: string;
  /** Path of the guest's kernel console log. */
  consoleLog: string;
  /** What the guest wrote to $KMESH_VM_RESULTS. */
  resultsDir: string;
  runDir: string;
  durationMs: number;
}

export type VmRunFailure = 'timeout' | 'qemu' | 'guest-setup' | 'no-exit-code';

/** The VM itself failed (as opposed to the command exiting non-zero): the message says why and where to look. */
export class VmRunError extends Error {
  constructor(
    message: string,
    readonly failure: VmRunFailure,
    readonly consoleLog: string,
    readonly output: string,
    readonly runDir: string,
  ) {
    super(message);
    this.name = 'VmRunError';
  }
}

const DEFAULT_MEMORY_MB = 1024;
const KEEP_RUNS = 20;
const KILL_GRACE_MS = 3000;
const GUEST_RESULTS = '/run/kmesh-vm/results';

const activeVms = new Set<ChildProcess>();
let exitHookInstalled = false;

/** Kills every qemu this process started and has not seen end (by PID). Safe to call more than once. */
export function killActiveVms(): void {
  for (const child of activeVms) {
    if (child.pid !== undefined && child.exitCode === null && child.signalCode === null) {
      try {
        process.kill(child.pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
  }
}

function track(child: ChildProcess): void {
  if (!exitHookInstalled) {
    process.on('exit', killActiveVms);
    exitHookInstalled = true;
  }
  activeVms.add(child);
  child.once('close', () => activeVms.delete(child));
}

function defaultMemoryMb(): number {
  const fromEnv = process.env.KMESH_VM_MEMORY_MB;
  if (fromEnv === undefined || fromEnv === '') return DEFAULT_MEMORY_MB;
  const n = Number(fromEnv);
  if (!Number.isInteger(n)) throw new Error(`KMESH_VM_MEMORY_MB must be an integer, got '${fromEnv}'`);
  return n;
}

/** Rebuilds the kernel's initramfs when init.sh or its builder changed since it was made. */
function ensureInitramfs(kernel: KernelArtifacts, root: string): void {
  const builder = path.join(root, 'test', 'vm', 'build-initramfs.sh');
  const inputs = [path.join(guestScriptsDir(root), 'init.sh'), builder];
  const built = statSync(kernel.initramfsPath).mtimeMs;
  if (inputs.some((f) => statSync(f).mtimeMs > built)) {
    execFileSync(builder, [kernel.dir], { stdio: ['ignore', 'ignore', 'inherit'] });
  }
}

function timestamp(): string {
  return new Date().toISOString().replace(/[-:]/g, '').replace('T', '-').replace(/\..*$/, '');
}

/** Keeps the newest run directories; older ones (over an hour old, so never a live run) are removed. */
function pruneRuns(runsDir: string): void {
  const entries = readdirSync(runsDir).sort();
  const hourAgo = Date.now() - 3600_000;
  for (const name of entries.slice(0, Math.max(0, entries.length - KEEP_RUNS))) {
    const dir = path.join(runsDir, name);
    try {
      if (statSync(dir).mtimeMs < hourAgo) rmSync(dir, { recursive: true, force: true });
    } catch {
      // removed concurrently
    }
  }
}

interface PreparedRun {
  kernel: KernelArtifacts;
  runDir: string;
  xferDir: string;
  resultsDir: string;
  consoleLog: string;
}

function prepareRun(
  options: {
    kernel: VmKernel;
    env?: Readonly<Record<string, string>>;
    cwd?: string;
    guestForward?: GuestForward;
    files?: Readonly<Record<string, string>>;
  },
  command: string | undefined,
): PreparedRun {
  const root = repoRoot();
  const kernel = kernelArtifacts(options.kernel, root);
  ensureInitramfs(kernel, root);
  const runsDir = path.join(vmCacheDir(root), 'runs');
  mkdirSync(runsDir, { recursive: true });
  pruneRuns(runsDir);
  const runDir = mkdtempSync(path.join(runsDir, `${timestamp()}-${options.kernel}-`));
  const xferDir = path.join(runDir, 'xfer');
  const resultsDir = path.join(xferDir, 'results');
  mkdirSync(resultsDir, { recursive: true });
  for (const [name, content] of Object.entries(options.files ?? {})) {
    if (!/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(name) || name === 'command.sh' || name === 'exit-code') {
      throw new Error(`invalid xfer file name '${name}'`);
    }
    writeFileSync(path.join(xferDir, name), content, { mode: 0o600 });
  }
  const env: Record<string, string> = {
    PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
    HOME: '/root',
    LANG: 'C.UTF-8',
    TERM: command === undefined ? (process.env.TERM ?? 'vt100') : 'dumb',
    KMESH_VM: '1',
    KMESH_VM_KERNEL: options.kernel,
    KMESH_VM_KERNEL_DIR: kernel.dir,
    KMESH_VM_RESULTS: GUEST_RESULTS,
    ...(process.env.CI !== undefined ? { CI: process.env.CI } : {}),
    ...(options.guestForward ? { KMESH_VM_NIC_NAME: GUEST_NIC.name, KMESH_VM_NIC_CIDR: GUEST_NIC.cidr } : {}),
    ...options.env,
  };
  const terminal =
    command === undefined && process.stdout.isTTY
      ? { rows: process.stdout.rows, columns: process.stdout.columns }
      : undefined;
  const script = guestCommandScript({
    env,
    prepareScript: path.join(guestScriptsDir(root), 'prepare.sh'),
    cwd: options.cwd ?? root,
    command,
    ...(terminal ? { terminal } : {}),
  });
  writeFileSync(path.join(xferDir, 'command.sh'), script, { mode: 0o755 });
  return { kernel, runDir, xferDir, resultsDir, consoleLog: path.join(runDir, 'console.log') };
}

/** qemu, wrapped by setpriv so it receives SIGKILL if this process dies first. */
function qemuCommand(args: string[]): [string, string[]] {
  const setpriv = ['/usr/bin/setpriv', '/bin/setpriv'].find((p) => existsSync(p));
  return setpriv ? [setpriv, ['--pdeathsig', 'KILL', QEMU_BINARY, ...args]] : [QEMU_BINARY, args];
}

function readExitCode(xferDir: string, consoleText: string): number | undefined {
  const file = path.join(xferDir, 'exit-code');
  const fromFile = existsSync(file) ? readFileSync(file, 'utf8').trim() : '';
  const fromConsole = /KMESH_VM_EXIT=(\d+)/.exec(consoleText)?.[1] ?? '';
  const text = fromFile !== '' ? fromFile : fromConsole;
  return /^\d+$/.test(text) ? Number(text) : undefined;
}

function tail(text: string, lines: number): string {
  return text.trimEnd().split('\n').slice(-lines).join('\n');
}

function readText(file: string): string {
  return existsSync(file) ? readFileSync(file, 'utf8') : '';
}

/** Boots the guest kernel, runs `command` as root and returns its exit code and output; throws VmRunError
 * when the VM itself fails (timeout, qemu error, guest setup failure, crash without an exit code). */
export async function runInVm(options: RunInVmOptions): Promise<VmRunResult> {
  if (!Number.isFinite(options.timeoutMs) || options.timeoutMs <= 0) {
    throw new Error(`timeoutMs must be a positive number, got ${options.timeoutMs}`);
  }
  const run = prepareRun(options, options.command);
  const args = qemuArgs({
    vmlinuz: run.kernel.vmlinuzPath,
    initramfs: run.kernel.initramfsPath,
    xferDir: run.xferDir,
    mode: 'run',
    consoleLog: run.consoleLog,
    memoryMb: options.memoryMb ?? defaultMemoryMb(),
    ...(options.guestForward ? { guestForward: options.guestForward } : {}),
  });
  const [bin, argv] = qemuCommand(args);
  const started = Date.now();
  const outputLog = createWriteStream(path.join(run.runDir, 'output.log'));
  const qemuLog = createWriteStream(path.join(run.runDir, 'qemu.log'));
  const decoder = new StringDecoder('utf8');
  let output = '';
  let qemuStderr = '';
  // Set from the timer callback; an object so the compiler does not narrow it to its initial value.
  const deadline = { fired: false };

  const child = spawn(bin, argv, { stdio: ['ignore', 'pipe', 'pipe'] });
  track(child);
  child.stdout.on('data', (chunk: Buffer) => {
    outputLog.write(chunk);
    const text = decoder.write(chunk);
    output += text;
    options.onOutput?.(text);
  });
  child.stderr.on('data', (chunk: Buffer) => {
    qemuLog.write(chunk);
    qemuStderr += chunk.toString('utf8');
  });
  const timer = setTimeout(() => {
    deadline.fired = true;
    if (child.pid !== undefined) {
      process.kill(child.pid, 'SIGTERM');
      setTimeout(() => {
        if (child.exitCode === null && child.signalCode === null && child.pid !== undefined)
          process.kill(child.pid, 'SIGKILL');
      }, KILL_GRACE_MS).unref();
    }
  }, options.timeoutMs);

  const ended = await new Promise<{ code: number | null; signal: NodeJS.Signals | null; spawnError?: Error }>(
    (resolve) => {
      child.once('error', (err) => resolve({ code: null, signal: null, spawnError: err }));
      child.once('close', (code, signal) => resolve({ code, signal }));
    },
  );
  clearTimeout(timer);
  const rest = decoder.end();
  output += rest;
  if (rest !== '') options.onOutput?.(rest);
  await Promise.all([new Promise((resolve) => outputLog.end(resolve)), new Promise((resolve) => qemuLog.end(resolve))]);
  const durationMs = Date.now() - started;
  const where = `kernel ${options.kernel}, run dir ${run.runDir}`;
  const consoleText = readText(run.consoleLog);
  const fail = (failure: VmRunFailure, message: string): VmRunError =>
    new VmRunError(message, failure, run.consoleLog, output, run.runDir);

  if (ended.spawnError) {
    throw fail(
      'qemu',
      `could not start ${QEMU_BINARY} (${ended.spawnError.message}); scripts/setup.sh installs qemu-system-x86`,
    );
  }
  if (deadline.fired) {
    throw fail(
      'timeout',
      `VM run timed out after ${Math.round(options.timeoutMs / 1000)} s (${where}); qemu pid ${child.pid} was killed. ` +
        `Console log: ${run.consoleLog}. Last console lines:\n${tail(consoleText, 5)}\nLast output lines:\n${tail(output, 10)}`,
    );
  }
  const setupFailure = /kmesh-vm: setup failed: .*/.exec(consoleText)?.[0];
  if (setupFailure !== undefined) {
    throw fail('guest-setup', `${setupFailure} (${where}); console log: ${run.consoleLog}`);
  }
  const exitCode = readExitCode(run.xferDir, consoleText);
  if (exitCode === undefined) {
    if (ended.code !== 0) {
      throw fail(
        'qemu',
        `qemu exited with ${ended.code ?? ended.signal} before the guest reported an exit code (${where}): ${tail(qemuStderr, 3)}`,
      );
    }
    throw fail(
      'no-exit-code',
      `the guest stopped without reporting an exit code (kernel panic or crash?) (${where}). ` +
        `Console log: ${run.consoleLog}. Last console lines:\n${tail(consoleText, 15)}`,
    );
  }
  return {
    kernel: options.kernel,
    release: run.kernel.release,
    exitCode,
    output,
    consoleLog: run.consoleLog,
    resultsDir: run.resultsDir,
    runDir: run.runDir,
    durationMs,
  };
}

export interface VmShellOptions {
  kernel: VmKernel;
  env?: Readonly<Record<string, string>>;
  guestForward?: GuestForward;
  files?: Readonly<Record<string, string>>;
  cwd?: string;
  memoryMb?: number;
  /** Optional bound for the session; none by default. */
  timeoutMs?: number;
}

/** Boots the guest with an interactive root shell on this terminal; resolves to the shell's exit code. */
export async function openVmShell(options: VmShellOptions): Promise<number> {
  const run = prepareRun(options, undefined);
  const args = qemuArgs({
    vmlinuz: run.kernel.vmlinuzPath,
    initramfs: run.kernel.initramfsPath,
    xferDir: run.xferDir,
    mode: 'shell',
    consoleLog: run.consoleLog,
    memoryMb: options.memoryMb ?? defaultMemoryMb(),
    ...(options.guestForward ? { guestForward: options.guestForward } : {}),
  });
  const [bin, argv] = qemuCommand(args);
  const child = spawn(bin, argv, { stdio: 'inherit' });
  track(child);
  const timer =
    options.timeoutMs === undefined
      ? undefined
      : setTimeout(() => {
          if (child.pid !== undefined) process.kill(child.pid, 'SIGKILL');
        }, options.timeoutMs);
  const code = await new Promise<number | null>((resolve, reject) => {
    child.once('error', reject);
    child.once('close', (c) => resolve(c));
  });
  if (timer) clearTimeout(timer);
  const exitCode = readExitCode(run.xferDir, '');
  if (exitCode === undefined) {
    throw new VmRunError(
      `the VM shell ended without an exit code (qemu exit ${code ?? 'signal'}; run dir ${run.runDir})`,
      'no-exit-code',
      run.consoleLog,
      '',
      run.runDir,
    );
  }
  return exitCode;
}
