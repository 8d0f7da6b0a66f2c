// Runs one kmesh-daemon per simulated node, inside the node's network namespace, through start_kmesh.sh
// exactly as the user guide starts it; each daemon writes its log and its JSON status file under the work
// directory. Processes are tracked and stopped by PID only.
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import type { DaemonStatus } from '../daemon/status.js';
import { packageRoot } from '../native/addon.js';
import type { ClusterStore } from './cluster-store.js';
import type { SimNode } from './netns-cluster.js';
import { run, sleep, type RunResult } from './shell.js';

export interface DaemonRunnerOptions {
  workDir: string;
  store: ClusterStore;
  rotationGraceSeconds: number;
  logLevel?: string;
  /** More daemon flags for every node (e.g. --rotation-retirement=timer). */
  extraFlags?: readonly string[];
}

export class DaemonRunner {
  private readonly procs = new Map<string, ChildProcess>();

  constructor(private readonly opts: DaemonRunnerOptions) {}

  nodeDir(node: SimNode): string {
    return path.join(this.opts.workDir, node.name);
  }

  statusFile(node: SimNode): string {
    return path.join(this.nodeDir(node), 'status.json');
  }

  logFile(node: SimNode): string {
    return path.join(this.nodeDir(node), 'daemon.log');
  }

  /** Flags every invocation (run and uninstall) shares for this node. */
  private nodeFlags(node: SimNode): string[] {
    return [
      `--node-name=${node.name}`,
      `--bpf-fs-path=/sys/fs/bpf/${node.netns}`,
      `--state-dir=${path.join(this.nodeDir(node), 'state')}`,
      ...this.opts.store.daemonFlags(node),
    ];
  }

  /** Starts the node's daemon: start_kmesh.sh --mode=dual-engine --enable-bypass=false --enable-ipsec=true … */
  async start(node: SimNode): Promise<number> {
    if (this.procs.has(node.name)) throw new Error(`daemon of ${node.name} is already running`);
    await fsp.mkdir(this.nodeDir(node), { recursive: true });
    const log = fs.openSync(this.logFile(node), 'a');
    const args = [
      `--net=/run/netns/${node.netns}`,
      '--',
      path.join(packageRoot(), 'start_kmesh.sh'),
      '--mode=dual-engine',
      '--enable-bypass=false',
      '--enable-ipsec=true',
      ...this.nodeFlags(node),
      `--status-file=${this.statusFile(node)}`,
      `--rotation-grace=${this.opts.rotationGraceSeconds}`,
      '--resync-interval=5',
      `--log-level=${this.opts.logLevel ?? 'info'}`,
      ...(this.opts.extraFlags ?? []),
    ];
    const child = spawn('nsenter', args, { stdio: ['ignore', log, log] });
    fs.closeSync(log);
    this.procs.set(node.name, child);
    child.once('exit', () => this.procs.delete(node.name));
    return child.pid ?? 0;
  }

  running(node: SimNode): boolean {
    return this.procs.has(node.name);
  }

  /** SIGTERM (the datapath stays), waits for the exit; SIGKILL after `graceMs`. Returns the exit code. */
  async stop(node: SimNode, graceMs = 30_000): Promise<number | null> {
    const child = this.procs.get(node.name);
    if (!child?.pid) return null;
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    process.kill(child.pid, 'SIGTERM');
    const timer = setTimeout(() => {
      if (child.pid !== undefined && child.exitCode === null) process.kill(child.pid, 'SIGKILL');
    }, graceMs);
    const code = await exited;
    clearTimeout(timer);
    return code;
  }

  async stopAll(): Promise<void> {
    await Promise.all([...this.procs.keys()].map((name) => this.stop({ name } as SimNode)));
  }

  /** kmesh-daemon uninstall for the node (in its namespace), through the executable as an operator runs it. */
  uninstall(node: SimNode): Promise<RunResult> {
    return run(
      'nsenter',
      [
        `--net=/run/netns/${node.netns}`,
        '--',
        path.join(packageRoot(), 'bin', 'kmesh-daemon.js'),
        'uninstall',
        ...this.nodeFlags(node),
      ],
      { timeoutMs: 120_000 },
    );
  }

  async status(node: SimNode): Promise<DaemonStatus | undefined> {
    try {
      return JSON.parse(await fsp.readFile(this.statusFile(node), 'utf8')) as DaemonStatus;
    } catch {
      return undefined;
    }
  }

  /** Last lines of the node's daemon log (for failure messages). */
  async logTail(node: SimNode, lines = 15): Promise<string> {
    try {
      return (await fsp.readFile(this.logFile(node), 'utf8')).trimEnd().split('\n').slice(-lines).join('\n');
    } catch {
      return '(no log)';
    }
  }
}

/** True when every node's daemon advertises `spi` and sends with it to every other node. */
export function allOnSpi(statuses: (DaemonStatus | undefined)[], spi: number, nodes: number): boolean {
  return statuses.every(
    (s) =>
      s !== undefined &&
      s.advertisedSpi === spi &&
      s.peers.length === nodes - 1 &&
      s.peers.every((p) => p.outboundSpi === spi),
  );
}

export { sleep };
