// `kmesh-daemon uninstall`: removes what this node owns (TC attachments and pins, our XFRM states and policies,
// this node's KmeshNodeInfo, the saved key history). Each step runs whatever the others do, so a cluster that
// cannot be reached (no kubeconfig, API down) still leaves the node itself clean; the summary names only what
// was really there, and a bpffs private to this mount namespace is called out (the pins would not be visible).
// The steps are injected: the shell (main.ts) passes the real ones, tests pass their own.
import { firstLine } from '../util/first-line.js';
import { privateBpffsMessage, type BpffsScope } from './bpffs-scope.js';

export interface UninstallSteps {
  bpfFsPath: string;
  nodeName: string;
  /** The bpffs verdict for --bpf-fs-path (see bpffs-scope.ts). */
  bpffsScope: () => Promise<BpffsScope>;
  /** Detaches and unpins; returns what was there (empty when nothing of ours was). */
  datapath: () => Promise<string[]>;
  /** Removes our XFRM states and policies; returns how many there were. */
  xfrm: () => Promise<number>;
  /** Deletes this node's KmeshNodeInfo; true if there was one. Opens the cluster source itself (may throw). */
  nodeInfo: () => Promise<boolean>;
  /** Deletes the saved key history; true if there was one. */
  keyState: () => Promise<boolean>;
}

export interface UninstallReport {
  removed: string[];
  problems: string[];
}

async function attempt<T>(what: string, problems: string[], fn: () => Promise<T>): Promise<T | undefined> {
  try {
    return await fn();
  } catch (err) {
    problems.push(`${what}: ${firstLine(err)}`);
    return undefined;
  }
}

export async function runUninstall(steps: UninstallSteps): Promise<UninstallReport> {
  const removed: string[] = [];
  const problems: string[] = [];
  const scope = await steps.bpffsScope();
  if (scope.kind === 'private') problems.push(`datapath: ${privateBpffsMessage(steps.bpfFsPath, scope.mountPoint)}`);
  removed.push(...((await attempt('datapath', problems, steps.datapath)) ?? []));
  const xfrm = await attempt('xfrm', problems, steps.xfrm);
  if (xfrm !== undefined && xfrm > 0) removed.push(`${xfrm} XFRM states and policies`);
  if ((await attempt('KmeshNodeInfo', problems, steps.nodeInfo)) === true) {
    removed.push(`KmeshNodeInfo ${steps.nodeName}`);
  }
  if ((await attempt('key history', problems, steps.keyState)) === true) removed.push('saved key history');
  return { removed, problems };
}

/** The human summary (stdout) and one line per problem (stderr). */
export function formatUninstall(report: UninstallReport): { stdout: string; stderr: string } {
  const stdout =
    report.removed.length > 0
      ? `removed: ${report.removed.join('; ')}\n`
      : report.problems.length > 0
        ? 'removed: nothing\n'
        : 'removed: nothing (none of it was installed)\n';
  return { stdout, stderr: report.problems.map((p) => `kmesh-daemon uninstall: ${p}\n`).join('') };
}
