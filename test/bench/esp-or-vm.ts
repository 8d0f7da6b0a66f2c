// For the benches that need ESP in the kernel (bench:daemon, bench:dump): where this kernel cannot run ESP, the
// bench runs again inside the kernel-test VM (6.12, qemu TCG) with the arguments it is given there.
import os from 'node:os';
import path from 'node:path';
import { espSupport } from '../../src/demo/esp-support.js';
import { packageRoot } from '../../src/native/addon.js';

export interface VmBenchRun {
  /** The command the guest runs from the checkout's root (with --in-vm, so it does not come back here). */
  command: string;
  timeoutMs: number;
  memoryMb: number;
  env?: Record<string, string>;
}

/**
 * Undefined when this kernel can run ESP (the bench runs here); else, after saying so, the exit code of the bench
 * run in the VM.
 */
export async function runInVmWithoutEsp(run: VmBenchRun, say: (line: string) => void): Promise<number | undefined> {
  const esp = await espSupport();
  if (esp.ok) return undefined;
  say(
    `host kernel ${os.release()} cannot run ESP (${esp.reason}); running the benchmark in the kernel-test VM (TCG: absolute times are slower than on hardware)`,
  );
  const runner = (await import(
    path.join(packageRoot(), 'dist', 'test', 'vm', 'runner.js')
  )) as typeof import('../vm/runner.js');
  const r = await runner.runInVm({
    kernel: '6.12',
    command: run.command,
    timeoutMs: run.timeoutMs,
    memoryMb: run.memoryMb,
    ...(run.env !== undefined ? { env: run.env } : {}),
    onOutput: (t) => process.stdout.write(t),
  });
  return r.exitCode;
}
