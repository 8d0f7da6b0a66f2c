// Command line for one-off kernel-test VM runs and debugging shells:
//   node dist/test/vm/vm.js --kernel 6.1 -- ip -s xfrm state     run a command, exit with its code
//   node dist/test/vm/vm.js --kernel 6.12 --shell                interactive root shell in the guest
// Options: --timeout SECONDS (default 600 for commands, none for shells), --memory MiB.
// The guest's exit code becomes this process's; a VM failure (timeout, crash) prints why and exits 125.
import { parseArgs } from 'node:util';
import { isVmKernel, VM_KERNELS } from './lib/kernels.js';
import { killActiveVms, openVmShell, runInVm, VmRunError } from './runner.js';

const USAGE = `usage: vm.js --kernel <${VM_KERNELS.join('|')}> [--timeout SECONDS] [--memory MiB] (--shell | -- <command...>)`;

function die(message: string): never {
  process.stderr.write(`vm: ${message}\n${USAGE}\n`);
  process.exit(2);
}

function positiveNumber(name: string, text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  const n = Number(text);
  if (!Number.isFinite(n) || n <= 0) die(`--${name} must be a positive number, got '${text}'`);
  return n;
}

for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
  process.on(signal, () => {
    killActiveVms();
    process.exit(130);
  });
}

let parsed;
try {
  parsed = parseArgs({
    options: {
      kernel: { type: 'string', short: 'k' },
      shell: { type: 'boolean' },
      timeout: { type: 'string' },
      memory: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
    allowPositionals: true,
  });
} catch (err) {
  die((err as Error).message);
}
const { values, positionals } = parsed;
if (values.help === true) {
  process.stdout.write(`${USAGE}\n`);
  process.exit(0);
}
const kernel = values.kernel ?? die('--kernel is required');
if (!isVmKernel(kernel)) die(`unknown kernel '${kernel}'`);
const timeoutS = positiveNumber('timeout', values.timeout);
const memoryMb = positiveNumber('memory', values.memory);
const shell = values.shell === true;
if (shell && positionals.length > 0) die('give either --shell or a command, not both');
if (!shell && positionals.length === 0) die('no command given (put it after --), or use --shell');

try {
  if (shell) {
    process.exitCode = await openVmShell({
      kernel,
      ...(memoryMb !== undefined ? { memoryMb } : {}),
      ...(timeoutS !== undefined ? { timeoutMs: timeoutS * 1000 } : {}),
    });
  } else {
    const result = await runInVm({
      kernel,
      command: positionals.join(' '),
      timeoutMs: (timeoutS ?? 600) * 1000,
      ...(memoryMb !== undefined ? { memoryMb } : {}),
      onOutput: (text) => process.stdout.write(text),
    });
    process.stderr.write(
      `vm: kernel ${result.release}: exit ${result.exitCode} after ${(result.durationMs / 1000).toFixed(1)} s; ` +
        `console log ${result.consoleLog}; results ${result.resultsDir}\n`,
    );
    process.exitCode = result.exitCode;
  }
} catch (err) {
  process.stderr.write(`vm: ${err instanceof VmRunError ? err.message : String(err)}\n`);
  process.exitCode = 125;
}
