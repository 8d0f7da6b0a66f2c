// Packet captures for datapath tests: tcpdump started in a namespace writing a pcap file, stopped by PID,
// then read back as tcpdump's text lines or searched for raw bytes (to prove a payload never went out in
// clear: a pcap holds every captured byte, so a plaintext payload would appear verbatim).
import { readFileSync } from 'node:fs';
import type { ChildProcess } from 'node:child_process';
import { execOk, spawnIn, stopBackground } from './netns.js';

export interface Capture {
  readonly file: string;
  /** Ends tcpdump (SIGINT, so it flushes the file) and waits for it. */
  stop(): Promise<void>;
}

/** Starts `tcpdump -i iface -w file [filter]` in `netns` and resolves once it is listening. */
export async function startCapture(options: {
  netns: string | undefined;
  iface: string;
  file: string;
  filter?: string;
  startTimeoutMs?: number;
  /** Deliver every packet to the file at once (short flows stopped right after); default: block-buffered. */
  immediate?: boolean;
}): Promise<Capture> {
  const argv = ['tcpdump', '-i', options.iface, '-nn', '-U', '-s', '0', '-w', options.file];
  // --immediate-mode: without it libpcap's TPACKET_V3 ring hands packets over a block at a time, and a block not
  // yet retired when SIGINT arrives never reaches the file (an empty capture after a short flow under load). It
  // costs a wake-up per packet, so bulk captures (thousands of packets on one vCPU) leave it off and keep up.
  if (options.immediate === true) argv.push('--immediate-mode');
  if (options.filter !== undefined) argv.push(options.filter);
  const child: ChildProcess = spawnIn(options.netns, argv);
  let stderr = '';
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => {
      void stopBackground(child, 'SIGKILL');
      reject(
        new Error(
          `tcpdump on ${options.iface} did not start listening within ${options.startTimeoutMs ?? 60000} ms: ${stderr.trim()}`,
        ),
      );
    }, options.startTimeoutMs ?? 60000);
    child.stderr?.on('data', (c: Buffer) => {
      stderr += c.toString('utf8');
      if (stderr.includes('listening on')) {
        clearTimeout(timer);
        resolve();
      }
    });
    child.once('close', (code) => {
      clearTimeout(timer);
      reject(new Error(`tcpdump on ${options.iface} exited with ${code}: ${stderr.trim()}`));
    });
  });
  return { file: options.file, stop: () => stopBackground(child, 'SIGINT') };
}

/** tcpdump's one-line decode of every packet in a pcap file. */
export async function captureLines(file: string, filter?: string): Promise<string[]> {
  const argv = ['tcpdump', '-nn', '-r', file];
  if (filter !== undefined) argv.push(filter);
  const out = await execOk(undefined, argv);
  return out.split('\n').filter((l) => l.trim() !== '');
}

/** Whether the raw capture file contains `needle` anywhere. */
export function captureContains(file: string, needle: Buffer | string): boolean {
  return readFileSync(file).includes(needle);
}
