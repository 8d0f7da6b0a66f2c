// Command line for one-off kernel-test VM runs and debugging shells:
//   node dist/test/vm/vm.js --kernel 6.1 -- ip -s xfrm state     run a command, exit with its code
//   node dist/test/vm/vm.js --kernel 6.12 --shell                interactive root shell in the guest
// Options: --timeout SECONDS (default 600 for commands, none for shells), --memory MiB, --control-plane (start
// a real Kubernetes control plane on the host for this run and give the guest its facts and the forwarded API
// address, as npm run test:vm does for e2e-kube; stopped afterwards, logs kept when the command fails).
// The guest's exit code becomes this process's; a VM failure (timeout, crash) prints why and exits 125.
import { parseArgs } from 'node:util';
import { startVmControlPlane, vmControlPlaneAvailable, type VmControlPlane } from './lib/control-plane-host.js';
import { isVmKernel, VM_KERNELS } from './lib/kernels.js';
import { killActiveVms, openVmShell, runInVm, VmRunError } from './runner.js';

const USAGE = `usage: vm.js --kernel <${VM_KERNELS.join('|')}> [--timeout SECONDS] [--memory MiB] [--control-plane] (--shell | -- <command...>)`;
let controlPlane: VmControlPlane | undefined;

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
    void (controlPlane?.stop(true) ?? Promise.resolve()).finally(() => process.exit(130));
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
      'control-plane': { type: 'boolean' },
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
if (values['control-plane'] === true) {
  let missing: string | undefined;
  try {
    missing = vmControlPlaneAvailable().missing;
  } catch (err) {
    missing = (err as Error).message;
  }
  if (missing !== undefined) die(`--control-plane: ${missing}`);
  try {
    controlPlane = await startVmControlPlane({ validForS: timeoutS ?? 24 * 3600 });
  } catch (err) {
    process.stderr.write(`vm: the control plane did not start: ${(err as Error).message}\n`);
    process.exit(125);
  }
  process.stderr.write(
    `vm: control plane ${controlPlane.cp.server} (logs ${controlPlane.cp.dir}) ready in ` +
      `${(controlPlane.startMs / 1000).toFixed(1)} s; the guest reaches it at ` +
      `${controlPlane.guestForward.guestIp}:${controlPlane.guestForward.guestPort}\n`,
  );
}
const withControlPlane = controlPlane
  ? { env: controlPlane.env, files: controlPlane.files, guestForward: controlPlane.guestForward }
  : {};

try {
  if (shell) {
    process.exitCode = await openVmShell({
      kernel,
      ...withControlPlane,
      ...(memoryMb !== undefined ? { memoryMb } : {}),
      ...(timeoutS !== undefined ? { timeoutMs: timeoutS * 1000 } : {}),
    });
  } else {
    const result = await runInVm({
      kernel,
      command: positionals.join(' '),
      ...withControlPlane,
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
} finally {
  if (controlPlane !== undefined) {
    const keep = process.exitCode !== 0;
    await controlPlane.stop(keep);
    if (keep) process.stderr.write(`vm: control plane logs kept in ${controlPlane.cp.dir}\n`);
  }
}
