// Traffic and observation helpers for the demo and the end-to-end suites: ping between pods with loss
// counting, tcpdump on the underlay bridge (every node-to-node packet crosses it), XFRM state/policy listings
// with key bytes redacted, and /proc/net/xfrm_stat per node.
import { spawn } from 'node:child_process';
import { parseXfrmStat, type XfrmStat } from '../daemon/xfrm-stat.js';
import { runOk } from './shell.js';
import { firstLine } from '../util/first-line.js';

export interface PingResult {
  from: string;
  to: string;
  transmitted: number;
  received: number;
  /** The icmp_seq numbers that got no reply (present only when some did not), at most 20. */
  missing?: number[];
}

/**
 * Reads ping's output for a run of `count` requests. With a deadline (-w) ping goes on sending past `count`
 * while a reply is late and stops once `count` replies are in, so the requests past `count` are not part of
 * the probe: `transmitted` is the requests among icmp_seq 1..count that were sent, `received` those of them
 * answered, `missing` the unanswered ones (present only when some are, at most 20).
 */
export function parsePing(
  output: string,
  count?: number,
): { transmitted: number; received: number; missing?: number[] } {
  const m = /(\d+) packets transmitted, (\d+) received/.exec(output);
  if (!m) throw new Error(`ping printed no summary: ${output.trim().split('\n').slice(-2).join(' | ')}`);
  const sent = Number(m[1]);
  const transmitted = count === undefined ? sent : Math.min(sent, count);
  const answered = new Set([...output.matchAll(/icmp_seq=(\d+)/g)].map((x) => Number(x[1])));
  let received = count === undefined ? Number(m[2]) : 0;
  if (count !== undefined) for (let seq = 1; seq <= transmitted; seq++) if (answered.has(seq)) received++;
  if (received >= transmitted) return { transmitted, received };
  const missing: number[] = [];
  for (let seq = 1; seq <= transmitted && missing.length < 20; seq++) if (!answered.has(seq)) missing.push(seq);
  return { transmitted, received, missing };
}

/**
 * Pings `to` from inside pod namespace `fromNetns`: `count` echo requests every `intervalS` seconds. ping waits
 * for every reply until a deadline 5 s after the last request (-w; with -c alone it lingers only two round
 * trips after the last request, so a reply delayed by a busy machine would count as lost); the extra requests
 * it sends meanwhile are left out of the result (parsePing).
 */
export function ping(fromNetns: string, to: string, count: number, intervalS: number): Promise<PingResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(
      'nsenter',
      [
        `--net=/run/netns/${fromNetns}`,
        '--',
        'ping',
        '-n',
        '-c',
        String(count),
        '-i',
        String(intervalS),
        '-W',
        '5',
        '-w',
        String(Math.ceil(count * intervalS) + 5),
        to,
      ],
      {
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    child.on('error', reject);
    child.on('close', () => {
      try {
        resolve({ from: fromNetns, to, ...parsePing(out, count) });
      } catch (err) {
        reject(err instanceof Error ? err : new Error(String(err)));
      }
    });
  });
}

export interface Capture {
  /** Stops tcpdump and returns its packet lines. */
  stop(): Promise<string[]>;
}

/** Starts tcpdump in `netns` on `iface` with a filter; packet lines are collected until stop(). */
export async function capture(netns: string, iface: string, filter: string): Promise<Capture> {
  const child = spawn(
    'nsenter',
    [`--net=/run/netns/${netns}`, '--', 'tcpdump', '-i', iface, '-n', '-l', '--immediate-mode', filter],
    {
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  let out = '';
  let err = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  const listening = new Promise<void>((resolve, reject) => {
    child.stderr.on('data', (d: Buffer) => {
      err += d.toString();
      if (err.includes('listening on')) resolve();
    });
    child.once('error', reject);
    child.once('exit', (code) => reject(new Error(`tcpdump exited ${code}: ${firstLine(err.trim())}`)));
  });
  await listening;
  return {
    stop: () =>
      new Promise((resolve) => {
        child.removeAllListeners('exit');
        child.once('close', () => resolve(out.split('\n').filter((l) => l.trim() !== '')));
        if (child.pid !== undefined) process.kill(child.pid, 'SIGINT');
      }),
  };
}

/** ESP lines of a capture as (src, dst, spi). */
export function espPackets(lines: readonly string[]): { src: string; dst: string; spi: number; line: string }[] {
  const out: { src: string; dst: string; spi: number; line: string }[] = [];
  for (const line of lines) {
    const m = /IP6? (\S+) > (\S+): ESP\(spi=0x([0-9a-f]{8})/.exec(line);
    if (m) out.push({ src: m[1] ?? '', dst: (m[2] ?? '').replace(/:$/, ''), spi: parseInt(m[3] ?? '0', 16), line });
  }
  return out;
}

/** `ip xfrm state` / `ip xfrm policy` of a namespace, with key bytes replaced. */
export async function xfrmListing(netns: string): Promise<{ states: string; policies: string }> {
  const redact = (s: string) => s.replace(/0x[0-9a-f]{16,}/g, '0x<key redacted>');
  return {
    states: redact(await runOk('ip', ['-n', netns, 'xfrm', 'state'])),
    policies: await runOk('ip', ['-n', netns, 'xfrm', 'policy']),
  };
}

export async function xfrmStat(netns: string): Promise<XfrmStat> {
  return parseXfrmStat(await runOk('cat', ['/proc/net/xfrm_stat'], { netns }));
}

/** Error counters (everything but the benign ones) that moved between two readings. */
export function xfrmErrorDelta(before: XfrmStat, after: XfrmStat): XfrmStat {
  const out: XfrmStat = {};
  for (const [k, v] of Object.entries(after)) {
    const d = v - (before[k] ?? 0);
    if (d > 0) out[k] = d;
  }
  return out;
}
