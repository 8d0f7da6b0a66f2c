// Traffic between namespaces for datapath tests: ping, and a sequence-numbered UDP flow (one receiver and
// one sender process from udp-agent.ts, each in its own namespace) that reports exactly which datagrams
// were lost, for "zero lost packets under continuous traffic" checks.
import type { ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { exec, spawnIn, stopBackground } from './netns.js';
import { lostDatagrams, type FlowTally } from './flow-count.js';

export interface PingResult {
  transmitted: number;
  received: number;
  output: string;
}

/** Parses ping's `N packets transmitted, M received` summary. */
export function parsePingSummary(output: string): { transmitted: number; received: number } {
  const m = /(\d+) packets transmitted, (\d+) (?:packets )?received/.exec(output);
  if (!m) throw new Error(`no ping summary in: ${output.trim().split('\n').slice(-3).join(' | ')}`);
  return { transmitted: Number(m[1]), received: Number(m[2]) };
}

/** Pings `dst` from `netns`; never throws for lost replies (inspect `received`). */
export async function ping(
  netns: string,
  dst: string,
  options: { count?: number; intervalS?: number; waitS?: number } = {},
): Promise<PingResult> {
  const count = options.count ?? 3;
  const argv = [
    'ping',
    '-n',
    '-c',
    String(count),
    '-i',
    String(options.intervalS ?? 0.2),
    '-W',
    String(options.waitS ?? 2),
    dst,
  ];
  const r = await exec(netns, argv, {
    timeoutMs: (count * ((options.intervalS ?? 0.2) + (options.waitS ?? 2)) + 30) * 1000,
  });
  return { ...parsePingSummary(r.stdout), output: r.stdout };
}

/** The agent next to this module, in the same form (.ts under tap's loader, .js in dist/). */
export function agentArgv(args: string[], name = 'udp-agent'): string[] {
  const here = fileURLToPath(import.meta.url);
  const agent = path.join(path.dirname(here), `${name}${path.extname(here)}`);
  if (!existsSync(agent)) throw new Error(`traffic agent ${agent} not found (run npm run build:ts)`);
  return [process.execPath, ...process.execArgv, agent, ...args];
}

/** Reads a child's stdout line by line; next() fails with its stderr when it ends or times out first. */
export function lineReader(child: ChildProcess, what: string): (timeoutMs: number) => Promise<string> {
  const lines: string[] = [];
  const waiters: (() => void)[] = [];
  let partial = '';
  let err = '';
  let closed: number | null | undefined;
  const wake = (): void => {
    for (const w of waiters.splice(0)) w();
  };
  child.stderr?.on('data', (c: Buffer) => (err += c.toString('utf8')));
  child.stdout?.on('data', (c: Buffer) => {
    partial += c.toString('utf8');
    let nl;
    while ((nl = partial.indexOf('\n')) >= 0) {
      lines.push(partial.slice(0, nl));
      partial = partial.slice(nl + 1);
    }
    wake();
  });
  child.once('close', (code) => {
    closed = code;
    wake();
  });
  return (timeoutMs) =>
    new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        // A waiter that gave up must not swallow the next line (a later next() call is owed it).
        const at = waiters.indexOf(check);
        if (at >= 0) waiters.splice(at, 1);
        reject(new Error(`${what}: no answer within ${timeoutMs} ms (${err.trim()})`));
      }, timeoutMs);
      const check = (): void => {
        const line = lines.shift();
        if (line !== undefined) {
          clearTimeout(timer);
          resolve(line);
        } else if (closed !== undefined) {
          clearTimeout(timer);
          reject(new Error(`${what} exited with ${closed ?? 'a signal'} before answering: ${err.trim()}`));
        } else {
          waiters.push(check);
        }
      };
      check();
    });
}

export async function expectLine(
  next: (timeoutMs: number) => Promise<string>,
  what: string,
  expected: string,
  timeoutMs: number,
): Promise<void> {
  const line = await next(timeoutMs);
  if (line !== expected) throw new Error(`${what} said '${line}' instead of '${expected}'`);
}

export async function jsonLine<T>(
  next: (timeoutMs: number) => Promise<string>,
  what: string,
  timeoutMs: number,
): Promise<T> {
  const line = await next(timeoutMs);
  try {
    return JSON.parse(line) as T;
  } catch {
    throw new Error(`${what} printed '${line}' instead of JSON`);
  }
}

export interface FlowEnd {
  netns: string;
  ip: string;
}

export interface UdpFlowResult {
  sent: number;
  sendErrors: number;
  lastSendError: string;
  tally: FlowTally;
  lost: number;
}

export interface UdpFlow {
  /** Resolves once a sender with a fixed count has sent everything (never, for count 0: use stop). */
  waitSent(timeoutMs?: number): Promise<void>;
  /** Stops the sender, waits drainMs for datagrams in flight, stops the receiver and reports. */
  stop(drainMs?: number): Promise<UdpFlowResult>;
}

/**
 * Starts a UDP flow from `from` to `to`: the receiver binds first, then the sender sends `count`
 * datagrams (0 = until stop()) every intervalMs; resolves once the sender is sending. Agents start slowly
 * under emulation: startTimeoutMs bounds each agent's start.
 */
export async function startUdpFlow(options: {
  from: FlowEnd;
  to: FlowEnd;
  port: number;
  payload: string;
  count?: number;
  intervalMs?: number;
  startTimeoutMs?: number;
}): Promise<UdpFlow> {
  const startTimeoutMs = options.startTimeoutMs ?? 60000;
  const receiver = spawnIn(
    options.to.netns,
    agentArgv(['receive', options.to.ip, String(options.port), options.payload]),
  );
  const fromReceiver = lineReader(receiver, 'UDP receiver');
  let sender: ChildProcess | undefined;
  try {
    await expectLine(fromReceiver, 'UDP receiver', 'ready', startTimeoutMs);
    sender = spawnIn(
      options.from.netns,
      agentArgv([
        'send',
        options.to.ip,
        String(options.port),
        options.payload,
        String(options.count ?? 0),
        String(options.intervalMs ?? 10),
      ]),
    );
    const fromSender = lineReader(sender, 'UDP sender');
    await expectLine(fromSender, 'UDP sender', 'sending', startTimeoutMs);
    const sentPromise = jsonLine<{ sent: number; errors: number; lastError: string }>(
      fromSender,
      'UDP sender',
      24 * 3600_000,
    );
    sentPromise.catch(() => undefined);
    const running = sender;
    return {
      async waitSent(timeoutMs = 600_000) {
        let timer: NodeJS.Timeout | undefined;
        const limit = new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new Error(`UDP sender did not finish within ${timeoutMs} ms`)), timeoutMs);
        });
        await Promise.race([sentPromise, limit]).finally(() => clearTimeout(timer));
      },
      async stop(drainMs = 1000) {
        await stopBackground(running, 'SIGTERM');
        const sent = await sentPromise;
        await new Promise((r) => setTimeout(r, drainMs));
        await stopBackground(receiver, 'SIGTERM');
        const tally = await jsonLine<FlowTally>(fromReceiver, 'UDP receiver', 30000);
        return {
          sent: sent.sent,
          sendErrors: sent.errors,
          lastSendError: sent.lastError,
          tally,
          lost: lostDatagrams(sent.sent, tally),
        };
      },
    };
  } catch (err) {
    if (sender) await stopBackground(sender, 'SIGKILL');
    await stopBackground(receiver, 'SIGKILL');
    throw err;
  }
}
