// `npm run test:vm`: runs every VM suite (test/vm/suites/*.test.ts, compiled to dist/ by npm run build:ts)
// on each guest kernel, one boot per kernel (kernels side by side), each suite as its own node process
// (a tap program) under a per-suite timeout. Streams the guest output (each line prefixed with its
// kernel), then prints per-kernel results and, as its last line, the tap-style total over all suites and
// kernels: `# { total: N, pass: N, fail: N, skip: N }`. Exit code 1 on any failure (a failing test, a
// crashed or timed-out suite, a VM that failed to boot).
// Environment: KMESH_VM_SUITES=name1,name2 (default all), KMESH_VM_KERNELS=6.1,6.12 (default both),
// KMESH_VM_SUITE_TIMEOUT_S (every suite; default 900 for e2e-* suites, 300 for the others), KMESH_VM_JOBS (VMs at a time, default 2: each has one vCPU,
// so two use both cores here), KMESH_VM_NODE_OPTIONS (node flags in the guest, default --max-lazy:
// under TCG, compiling less code up front measured faster), KMESH_VM_MEMORY_MB (default 1024).
// Suites in NEEDS_CONTROL_PLANE (e2e-kube) get a real Kubernetes control plane: when one of them is selected,
// every kernel's boot gets its own, started on the host before the boot and stopped (by PID) after it, reached
// by the guest through qemu's restricted user network (lib/control-plane-host.ts); its logs are kept when a
// suite needing it failed. Binaries: KUBEBUILDER_ASSETS, else .cache/k8s/current/bin.
import { existsSync, readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { parseKernelList, VM_KERNELS, type VmKernel } from './lib/kernels.js';
import { repoRoot } from './lib/paths.js';
import {
  addCounts,
  failureExcerpt,
  formatCounts,
  selectSuites,
  suiteLoopCommand,
  suiteOutcomes,
  suiteTimeoutFor,
  ZERO_COUNTS,
  type TapCounts,
} from './lib/suite-run.js';
import {
  noControlPlaneEnv,
  startVmControlPlane,
  vmControlPlaneAvailable,
  type VmControlPlane,
} from './lib/control-plane-host.js';
import { killActiveVms, runInVm, VmRunError } from './runner.js';

/** Suites that run against a real control plane on the host. */
const NEEDS_CONTROL_PLANE = ['e2e-kube'];
const activeControlPlanes = new Set<VmControlPlane>();

const root = repoRoot();
const suitesDir = path.join(root, 'test', 'vm', 'suites');
let total: TapCounts = ZERO_COUNTS;

function finish(): never {
  process.stdout.write(`${formatCounts(total)}\n`);
  process.exit(total.fail === 0 ? 0 : 1);
}

function failRun(message: string): never {
  process.stdout.write(`not ok - ${message}\n`);
  total = addCounts(total, { total: 1, pass: 0, fail: 1, skip: 0 });
  finish();
}

function intEnv(name: string, fallback: number): number {
  const text = process.env[name];
  if (text === undefined || text === '') return fallback;
  const n = Number(text);
  if (!Number.isInteger(n) || n <= 0) failRun(`${name} must be a positive integer, got '${text}'`);
  return n;
}

/** Compiled files older than their TypeScript source, among the suites and everything under test/vm/lib. */
function staleOutputs(names: readonly string[]): string[] {
  const sources = [
    ...names.map((n) => path.join('test', 'vm', 'suites', `${n}.test.ts`)),
    ...readdirSync(path.join(root, 'test', 'vm', 'lib'))
      .filter((f) => f.endsWith('.ts') && !f.endsWith('.d.ts'))
      .map((f) => path.join('test', 'vm', 'lib', f)),
  ];
  return sources.filter((src) => {
    const out = path.join(root, 'dist', src.replace(/\.ts$/, '.js'));
    return !existsSync(out) || statSync(out).mtimeMs < statSync(path.join(root, src)).mtimeMs;
  });
}

for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
  process.on(signal, () => {
    killActiveVms();
    process.stdout.write(`run-suites: ${signal}, VMs killed\n`);
    // Control planes stop by PID, logs kept; their watchdog would also kill them once this process is gone.
    const stops = Promise.all([...activeControlPlanes].map((c) => c.stop(true).catch(() => undefined)));
    void Promise.race([stops, new Promise((r) => setTimeout(r, 10_000))]).then(() => process.exit(130));
  });
}

let kernels: VmKernel[];
let names: string[];
try {
  kernels = parseKernelList(process.env.KMESH_VM_KERNELS ?? VM_KERNELS.join(','));
  const available = existsSync(suitesDir)
    ? readdirSync(suitesDir)
        .filter((f) => f.endsWith('.test.ts'))
        .map((f) => f.replace(/\.test\.ts$/, ''))
        .sort()
    : [];
  names = selectSuites(available, process.env.KMESH_VM_SUITES);
} catch (err) {
  failRun((err as Error).message);
}
if (kernels.length === 0 || names.length === 0) {
  process.stdout.write(
    `run-suites: nothing to run (kernels: ${kernels.join(', ') || 'none'}; suites: ${names.join(', ') || 'none'})\n`,
  );
  finish();
}
const stale = staleOutputs(names);
if (stale.length > 0)
  failRun(`compiled VM tests are older than their sources (${stale.join(', ')}): run npm run build:ts`);

const timeoutOverride = process.env.KMESH_VM_SUITE_TIMEOUT_S ? intEnv('KMESH_VM_SUITE_TIMEOUT_S', 300) : undefined;
const nodeOptions = process.env.KMESH_VM_NODE_OPTIONS ?? '--max-lazy';
const suites = names.map((name) => ({
  name,
  file: path.join(root, 'dist', 'test', 'vm', 'suites', `${name}.test.js`),
  timeoutS: suiteTimeoutFor(name, timeoutOverride),
}));
const bootTimeoutMs = (120 + suites.reduce((sum, s) => sum + s.timeoutS + 45, 0)) * 1000;
const needsControlPlane = names.some((n) => NEEDS_CONTROL_PLANE.includes(n));
let controlPlaneMissing: string | undefined;
if (needsControlPlane) {
  try {
    controlPlaneMissing = vmControlPlaneAvailable().missing;
  } catch (err) {
    failRun((err as Error).message);
  }
}
const started = Date.now();
const report: string[] = [];

/** Prints a VM's output line by line, each line prefixed with its kernel (VMs may run side by side). */
function linePrinter(prefix: string): { write(text: string): void; flush(): void } {
  let partial = '';
  return {
    write(text) {
      partial += text;
      const lines = partial.split('\n');
      partial = lines.pop() ?? '';
      if (lines.length > 0) process.stdout.write(lines.map((l) => `${prefix}${l}\n`).join(''));
    },
    flush() {
      if (partial !== '') process.stdout.write(`${prefix}${partial}\n`);
      partial = '';
    },
  };
}

/** Boots one kernel, runs every suite, and returns its report lines and counts. */
async function runKernel(kernel: VmKernel): Promise<{ counts: TapCounts; lines: string[] }> {
  const t0 = Date.now();
  const printer = linePrinter(`[${kernel}] `);
  printer.write(`# VM kernel ${kernel}: suites ${names.join(', ')}\n`);
  let controlPlane: VmControlPlane | undefined;
  let controlPlaneEnv: Record<string, string> = {};
  if (needsControlPlane && controlPlaneMissing !== undefined) {
    printer.write(`# no control plane: ${controlPlaneMissing}\n`);
    controlPlaneEnv = noControlPlaneEnv(controlPlaneMissing);
  } else if (needsControlPlane) {
    try {
      controlPlane = await startVmControlPlane({ validForS: bootTimeoutMs / 1000, name: `kmesh-vm-cp-${kernel}` });
    } catch (err) {
      printer.write(`not ok - kernel ${kernel}: the control plane did not start: ${(err as Error).message}\n`);
      printer.flush();
      const fail = { total: 1, pass: 0, fail: 1, skip: 0 };
      return { counts: fail, lines: [`not ok - kernel ${kernel}: the control plane did not start`] };
    }
    activeControlPlanes.add(controlPlane);
    const { cp, startMs, manifestsMs } = controlPlane;
    printer.write(
      `# control plane (kube-apiserver ${cp.binaries.kubeVersion}, ${cp.binaries.source}) on ${cp.server}: ` +
        `ready in ${(startMs / 1000).toFixed(1)} s, manifests + token ${(manifestsMs / 1000).toFixed(1)} s; ` +
        `the guest reaches it at ${controlPlane.guestForward.guestIp}:${controlPlane.guestForward.guestPort}\n`,
    );
  }
  let output: string;
  let detail: string;
  try {
    const result = await runInVm({
      kernel,
      command: suiteLoopCommand(suites, nodeOptions),
      timeoutMs: bootTimeoutMs,
      onOutput: (text) => printer.write(text),
      env: { ...controlPlaneEnv, ...controlPlane?.env },
      ...(controlPlane ? { guestForward: controlPlane.guestForward, files: controlPlane.files } : {}),
    });
    output = result.output;
    detail = `${result.release}, console log ${result.consoleLog}`;
  } catch (err) {
    if (!(err instanceof VmRunError)) {
      if (controlPlane !== undefined) {
        await controlPlane.stop(true);
        activeControlPlanes.delete(controlPlane);
      }
      throw err;
    }
    output = err.output;
    detail = `VM failure: ${err.message}`;
    printer.write(`\nnot ok - kernel ${kernel}: ${err.message}\n`);
  }
  printer.flush();
  const lines: string[] = [];
  let counts = ZERO_COUNTS;
  const outcomes = suiteOutcomes(suites, output);
  if (controlPlane !== undefined) {
    const failed = outcomes.some(
      (o) => NEEDS_CONTROL_PLANE.includes(o.name) && (o.problem !== undefined || o.counts.fail > 0),
    );
    await controlPlane.stop(failed);
    activeControlPlanes.delete(controlPlane);
    if (failed) lines.push(`# kernel ${kernel}: control plane logs kept in ${controlPlane.cp.dir}`);
  }
  for (const outcome of outcomes) {
    let suiteCounts = outcome.counts;
    if (outcome.problem !== undefined) {
      suiteCounts = addCounts(suiteCounts, { total: 1, pass: 0, fail: 1, skip: 0 });
      lines.push(`not ok - kernel ${kernel}: suite ${outcome.name} ${outcome.problem}`);
    }
    counts = addCounts(counts, suiteCounts);
    lines.push(`#   ${kernel} ${outcome.name}: ${formatCounts(suiteCounts).slice(2)}`);
    if (outcome.counts.fail > 0) lines.push(...failureExcerpt(outcome.output).map((l) => `#     ${l}`));
  }
  lines.push(
    `# kernel ${kernel}: ${formatCounts(counts).slice(2)} in ${((Date.now() - t0) / 1000).toFixed(0)} s (${detail})`,
  );
  return { counts, lines };
}

// Kernels run side by side (one single-vCPU qemu each) up to KMESH_VM_JOBS at a time.
const jobs = intEnv('KMESH_VM_JOBS', 2);
const queue = [...kernels];
const results = new Map<VmKernel, { counts: TapCounts; lines: string[] }>();
await Promise.all(
  Array.from({ length: Math.min(jobs, queue.length) }, async () => {
    for (let kernel = queue.shift(); kernel !== undefined; kernel = queue.shift()) {
      results.set(kernel, await runKernel(kernel));
    }
  }),
);
for (const kernel of kernels) {
  const r = results.get(kernel);
  if (r === undefined) continue;
  total = addCounts(total, r.counts);
  report.push(...r.lines);
}

process.stdout.write(
  `\n# VM suites finished in ${((Date.now() - started) / 1000).toFixed(0)} s\n${report.join('\n')}\n`,
);
finish();
