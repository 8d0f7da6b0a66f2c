// Helpers for datapath tests that touch the kernel: a skip reason when they cannot run (no root, nothing built,
// or a kernel older than a feature needs), a private bpffs root per test file, running commands (optionally inside one of our netns through nsenter, which keeps
// /sys/fs/bpf visible), and netns creation/removal limited to names we chose (prefix kmt-dp-).
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
/** The checkout: test/host/lib -> ../../.., or from the compiled copy dist/test/host/lib -> ../../../.. */
export const REPO_ROOT = path.resolve(here, here.includes(`${path.sep}dist${path.sep}`) ? '../../../..' : '../../..');
export const OBJ_DIR = path.join(REPO_ROOT, 'build-bpf');

/** Why kernel datapath tests cannot run here, or false when they can. */
export function kernelSkipReason(): string | false {
  if (process.getuid?.() !== 0) return 'needs root (BPF, netns, tc)';
  if (!existsSync(path.join(OBJ_DIR, 'tc_mark_encrypt.o')))
    return 'BPF objects missing (build-bpf/): run npm run build:bpf';
  if (!existsSync(path.join(REPO_ROOT, 'build', 'Release', 'kmesh_native.node'))) {
    return 'native addon missing: run npm run build';
  }
  return false;
}

/** Whether the running kernel is at least major.minor (from its release string, e.g. "6.1.0-57-amd64"). */
export function kernelAtLeast(major: number, minor: number, release = os.release()): boolean {
  const [maj = 0, min = 0] = release.split('.').map((x) => parseInt(x, 10));
  return maj > major || (maj === major && min >= minor);
}

/** TCX links (BPF_TCX_INGRESS) arrived in Linux 6.6. */
export const TCX_KERNEL = { major: 6, minor: 6 } as const;

/** Whether this kernel has TCX links; older ones get clsact filters. */
export function kernelHasTcx(): boolean {
  return kernelAtLeast(TCX_KERNEL.major, TCX_KERNEL.minor);
}

/** A skip reason naming the feature and the kernel it needs, or false when this kernel is new enough. */
export function requireKernel(major: number, minor: number, feature: string): string | false {
  return kernelAtLeast(major, minor) ? false : `${feature} needs kernel ${major}.${minor}+, this is ${os.release()}`;
}

/** A bpffs root no one else uses, under /sys/fs/bpf (mounted by BpfDatapath.load when absent). */
export function privateBpffsRoot(tag: string): string {
  return `/sys/fs/bpf/kmt-dp-${tag}-${process.pid}`;
}

export function run(cmd: string, args: readonly string[], netns?: string): string {
  const full = netns ? ['nsenter', `--net=/run/netns/${netns}`, cmd, ...args] : [cmd, ...args];
  const [bin, ...rest] = full;
  try {
    return execFileSync(bin!, rest, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (e) {
    const err = e as { stderr?: string; message: string };
    throw new Error(`${full.join(' ')} failed: ${(err.stderr ?? err.message).trim()}`, { cause: e });
  }
}

/** Runs a shell script inside a netns. */
export function sh(netns: string, script: string): string {
  return run('sh', ['-ec', script], netns);
}

export function netnsPath(name: string): string {
  return `/run/netns/${name}`;
}

export function addNetns(name: string): void {
  if (!name.startsWith('kmt-dp-')) throw new Error(`refusing to create netns ${name}: not one of ours`);
  mkdirSync('/run/netns', { recursive: true });
  run('ip', ['netns', 'add', name]);
  run('ip', ['link', 'set', 'lo', 'up'], name);
}

export function delNetns(name: string): void {
  if (!name.startsWith('kmt-dp-')) throw new Error(`refusing to delete netns ${name}: not one of ours`);
  spawnSync('ip', ['netns', 'del', name], { stdio: 'ignore' });
}

/** Sends one packet with Python's sockets: UDP (proto 17) or a raw IP protocol (e.g. 50 = ESP). */
export function sendPacket(netns: string, src: string, dst: string, proto: number, count = 1): void {
  const v6 = dst.includes(':');
  const script = [
    'import socket, sys',
    `fam = socket.AF_INET6 if ${v6 ? 'True' : 'False'} else socket.AF_INET`,
    `s = socket.socket(fam, socket.SOCK_DGRAM) if ${proto} == 17 else socket.socket(fam, socket.SOCK_RAW, ${proto})`,
    `s.bind(('${src}', 0))`,
    `for i in range(${count}): s.sendto(b'\\0' * 24, ('${dst}', 9))`,
  ].join('\n');
  run('/usr/bin/python3', ['-c', script], netns);
}

/** Sends a raw Ethernet frame out of a device (AF_PACKET), e.g. one too short to be a valid IP packet. */
export function sendFrame(netns: string, device: string, frameHex: string): void {
  const script = [
    'import socket',
    `s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)`,
    `s.bind(('${device}', 0))`,
    `s.send(bytes.fromhex('${frameHex}'))`,
  ].join('\n');
  run('/usr/bin/python3', ['-c', script], netns);
}

/** Compiles a test-only BPF C file to an object in dir; returns its path. */
export function compileBpf(source: string, dir: string): string {
  mkdirSync(dir, { recursive: true });
  const out = path.join(dir, `${path.basename(source, '.bpf.c')}.o`);
  run('clang', [
    '-O2',
    '-g',
    '-Wall',
    '-Werror',
    '-target',
    'bpf',
    '-I/usr/include/x86_64-linux-gnu',
    '-c',
    source,
    '-o',
    out,
  ]);
  return out;
}
