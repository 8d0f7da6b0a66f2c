// The qemu command line of a kernel-test VM (pure). TCG only: these machines are guests themselves and
// cannot use KVM. `-cpu max` exposes AES-NI/PCLMUL so the guest picks rfc4106-gcm-aesni. The host's / is
// shared read-only (the guest lays a tmpfs overlay over it); the xfer directory is shared read-write.
// Run mode: ttyS0 (kernel console) goes to a log file, ttyS1 carries the command's output to qemu's stdout.
// Shell mode: ttyS0 is the terminal (qemu's -nographic mux: Ctrl-A X quits).

export interface QemuArgsInput {
  vmlinuz: string;
  initramfs: string;
  xferDir: string;
  mode: 'run' | 'shell';
  /** Kernel console log file (run mode). */
  consoleLog: string;
  memoryMb: number;
}

export const QEMU_BINARY = 'qemu-system-x86_64';

/** A qemu -virtfs option value may not contain a comma unless doubled; qemu's own escaping. */
function qemuOptionValue(value: string): string {
  return value.replaceAll(',', ',,');
}

export function qemuArgs(input: QemuArgsInput): string[] {
  if (!Number.isInteger(input.memoryMb) || input.memoryMb < 256) {
    throw new Error(`VM memory must be an integer of at least 256 MiB, got ${input.memoryMb}`);
  }
  const append = ['console=ttyS0', 'quiet', 'panic=-1', `KMESH_VM_MODE=${input.mode}`];
  const args = [
    '-accel',
    'tcg,tb-size=256',
    '-cpu',
    'max',
    '-smp',
    '1',
    '-m',
    String(input.memoryMb),
    '-no-reboot',
    '-nic',
    'none',
    '-kernel',
    input.vmlinuz,
    '-initrd',
    input.initramfs,
    '-append',
    append.join(' '),
    '-virtfs',
    'local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap',
    '-virtfs',
    `local,path=${qemuOptionValue(input.xferDir)},mount_tag=xfer,security_model=none,multidevs=remap`,
  ];
  if (input.mode === 'shell') {
    args.push('-nographic');
  } else {
    args.push('-nodefaults', '-display', 'none', '-serial', `file:${input.consoleLog}`, '-serial', 'stdio');
  }
  return args;
}
