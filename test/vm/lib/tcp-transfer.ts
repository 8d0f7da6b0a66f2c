// A TCP bulk transfer between two namespaces, checked byte for byte (tcp-agent.ts on both ends): the
// receiver listens first, the sender sends `bytes` of a seeded stream; the result says how much arrived,
// whether all of it did within the time limit, and the offset of the first wrong byte if any. A transfer
// that stalls (e.g. full-size segments dropped and no ICMP to tell the sender) is reported, not thrown.
import type { ChildProcess } from 'node:child_process';
import { spawnIn, stopBackground } from './netns.js';
import { agentArgv, expectLine, jsonLine, lineReader, type FlowEnd } from './traffic.js';

export interface TcpTransferResult {
  bytes: number;
  received: number;
  /** Everything arrived and the sender closed within the time limit. */
  completed: boolean;
  /** Offset of the first byte that differs from the stream; -1 = none. */
  mismatchAt: number;
  seconds: number;
}

export async function tcpTransfer(options: {
  from: FlowEnd;
  to: FlowEnd;
  port: number;
  bytes: number;
  seed: string;
  timeoutMs: number;
  startTimeoutMs?: number;
}): Promise<TcpTransferResult> {
  const startTimeoutMs = options.startTimeoutMs ?? 60000;
  const args = (mode: string, ip: string): string[] =>
    agentArgv([mode, ip, String(options.port), String(options.bytes), options.seed], 'tcp-agent');
  const receiver = spawnIn(options.to.netns, args('serve', options.to.ip));
  const fromReceiver = lineReader(receiver, 'TCP receiver');
  let sender: ChildProcess | undefined;
  try {
    await expectLine(fromReceiver, 'TCP receiver', 'ready', startTimeoutMs);
    const started = Date.now();
    sender = spawnIn(options.from.netns, args('send', options.to.ip));
    let result: { received: number; mismatchAt: number };
    let completed = true;
    try {
      result = await jsonLine(fromReceiver, 'TCP receiver', options.timeoutMs);
    } catch {
      completed = false;
      await stopBackground(receiver, 'SIGTERM');
      result = await jsonLine(fromReceiver, 'TCP receiver', 30000);
    }
    const seconds = (Date.now() - started) / 1000;
    return {
      bytes: options.bytes,
      received: result.received,
      completed: completed && result.received === options.bytes,
      mismatchAt: result.mismatchAt,
      seconds,
    };
  } finally {
    if (sender) await stopBackground(sender, 'SIGKILL');
    await stopBackground(receiver, 'SIGKILL');
  }
}
