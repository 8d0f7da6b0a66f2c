// The guest kernels the VM harness knows (6.1 LTS from bookworm, 6.12 from bookworm-backports) and where
// test/vm/fetch-kernels.sh put each one: the kernel.env it wrote is parsed here into the paths qemu needs.
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { repoRoot, vmCacheDir } from './paths.js';

export const VM_KERNELS = ['6.1', '6.12'] as const;
export type VmKernel = (typeof VM_KERNELS)[number];

export function isVmKernel(name: string): name is VmKernel {
  return (VM_KERNELS as readonly string[]).includes(name);
}

/** Parses a comma-separated kernel list such as `6.1,6.12`; throws naming the first unknown entry. */
export function parseKernelList(text: string): VmKernel[] {
  const names = text
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');
  for (const name of names) {
    if (!isVmKernel(name)) throw new Error(`unknown guest kernel '${name}' (known: ${VM_KERNELS.join(', ')})`);
  }
  return names as VmKernel[];
}

export interface KernelEnv {
  kernel: VmKernel;
  packageName: string;
  /** `uname -r` of the guest, e.g. 6.1.0-56-amd64. */
  release: string;
  /** vmlinuz path relative to the kernel directory. */
  vmlinuz: string;
}

/** Parses the `KEY=value` lines of a kernel.env file; throws naming a missing or bad key. */
export function parseKernelEnv(text: string, source: string): KernelEnv {
  const values = new Map<string, string>();
  for (const line of text.split('\n')) {
    const m = /^([A-Z_]+)=(.*)$/.exec(line.trim());
    if (m) values.set(m[1]!, m[2]!);
  }
  const need = (key: string): string => {
    const v = values.get(key);
    if (v === undefined || v === '') throw new Error(`${source}: missing ${key}`);
    return v;
  };
  const kernel = need('KERNEL');
  if (!isVmKernel(kernel)) throw new Error(`${source}: KERNEL=${kernel} is not one of ${VM_KERNELS.join(', ')}`);
  return { kernel, packageName: need('PACKAGE'), release: need('KVER'), vmlinuz: need('VMLINUZ') };
}

export interface KernelArtifacts extends KernelEnv {
  dir: string;
  vmlinuzPath: string;
  initramfsPath: string;
}

/** Locates a fetched guest kernel; throws a one-line instruction when it is missing or incomplete. */
export function kernelArtifacts(kernel: VmKernel, root = repoRoot()): KernelArtifacts {
  const dir = path.join(vmCacheDir(root), 'kernels', kernel);
  const envFile = path.join(dir, 'kernel.env');
  const fix = `run test/vm/fetch-kernels.sh ${kernel} (scripts/setup.sh does it)`;
  if (!existsSync(envFile)) throw new Error(`guest kernel ${kernel} is not fetched (${envFile} missing): ${fix}`);
  const env = parseKernelEnv(readFileSync(envFile, 'utf8'), envFile);
  const vmlinuzPath = path.join(dir, env.vmlinuz);
  const initramfsPath = path.join(dir, 'initramfs.cpio.gz');
  for (const file of [
    vmlinuzPath,
    initramfsPath,
    path.join(dir, 'usr', 'lib', 'modules', env.release, 'modules.dep'),
  ]) {
    if (!existsSync(file)) throw new Error(`guest kernel ${kernel} is incomplete (${file} missing): ${fix}`);
  }
  return { ...env, dir, vmlinuzPath, initramfsPath };
}
