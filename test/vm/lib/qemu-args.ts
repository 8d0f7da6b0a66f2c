// The qemu command line of a kernel-test VM (pure). TCG only: these machines are guests themselves and
// cannot use KVM. `-cpu max` exposes AES-NI/PCLMUL so the guest picks rfc4106-gcm-aesni. The host's / is
// shared read-only (the guest lays a tmpfs overlay over it); the xfer directory is shared read-write.
// Run mode: ttyS0 (kernel console) goes to a log file, ttyS1 carries the command's output to qemu's stdout.
// Shell mode: ttyS0 is the terminal (qemu's -nographic mux: Ctrl-A X quits).
// Network: none (`-nic none`), unless a guest forward is asked for: then one virtio NIC on qemu's user-mode
// network with `restrict=on` (the guest reaches neither the host nor the outside) and a single `guestfwd`:
// TCP connections the guest opens to GUEST_IP:GUEST_PORT are each handed to a new `relayCommand` process on
// the host (qemu's `cmd:` form; its stdin/stdout is the connection), e.g. `busybox nc 127.0.0.1 <port>`.
// (The chardev form, `tcp:HOST:PORT`, is one host connection made at start-up and shared by every guest
// connection, which breaks as soon as two are open, as an API client's watches are.)

export interface QemuArgsInput {
  vmlinuz: string;
  initramfs: string;
  xferDir: string;
  mode: 'run' | 'shell';
  /** Kernel console log file (run mode). */
  consoleLog: string;
  memoryMb: number;
  /** One forwarded guest address (see the header); absent: no network device at all. */
  guestForward?: GuestForward;
}

/** The guest's side of the user network: qemu's default guest address, on a NIC prepare.sh renames to kmvm0
 * (a name no test uses) in the guest's root network namespace. */
export const GUEST_NIC = { name: 'kmvm0', cidr: '10.0.2.15/24' } as const;

export interface GuestForward {
  /** Address in qemu's user network (10.0.2.0/24) the guest connects to, e.g. 10.0.2.100. */
  guestIp: string;
  guestPort: number;
  /** Host command run per connection with the connection as its stdin/stdout (no commas, no quotes). */
  relayCommand: string;
}

export const QEMU_BINARY = 'qemu-system-x86_64';

/** A qemu -virtfs option value may not contain a comma unless doubled; qemu's own escaping. */
function qemuOptionValue(value: string): string {
  return value.replaceAll(',', ',,');
}

/** The `-nic` value for a restricted user-mode network with one guest forward. */
export function userNic(fwd: GuestForward): string {
  if (!/^\d{1,3}(\.\d{1,3}){3}$/.test(fwd.guestIp))
    throw new Error(`guest forward address must be IPv4, got '${fwd.guestIp}'`);
  if (!Number.isInteger(fwd.guestPort) || fwd.guestPort <= 0 || fwd.guestPort > 65535) {
    throw new Error(`guest forward port must be 1-65535, got ${fwd.guestPort}`);
  }
  if (/[,'"]/.test(fwd.relayCommand) || fwd.relayCommand.trim() === '') {
    throw new Error(`guest forward command must be non-empty without commas or quotes, got '${fwd.relayCommand}'`);
  }
  return [
    'user',
    'model=virtio-net-pci',
    'restrict=on',
    'ipv6=off',
    `guestfwd=tcp:${fwd.guestIp}:${fwd.guestPort}-cmd:${fwd.relayCommand}`,
  ].join(',');
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
    input.guestForward === undefined ? 'none' : userNic(input.guestForward),
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
