#!/bin/busybox sh
# /init of the kernel-test VM (packed into the initramfs by test/vm/build-initramfs.sh).
# Loads the early modules, mounts the host's / read-only over 9p under a tmpfs overlay at /newroot, mounts the
# "xfer" share (command.sh in, exit-code and results/ out) at /newroot/run/kmesh-vm, then runs command.sh
# chrooted into /newroot as root: output to ttyS1 (KMESH_VM_MODE=run, the default) or an interactive
# terminal on the console (KMESH_VM_MODE=shell). Writes the exit code to the xfer share, prints
# `KMESH_VM_EXIT=<code>` on the console, ends every process left in the guest and resets the machine
# (qemu runs with -no-reboot, so that ends qemu).
/bin/busybox --install -s /bin
export PATH=/bin:/sbin
mode=${KMESH_VM_MODE:-run}

say() { echo "kmesh-vm: $*" >/dev/console; }
finish() { # finish <exit code>
  echo "$1" >/newroot/run/kmesh-vm/exit-code 2>/dev/null
  sync
  echo "KMESH_VM_EXIT=$1" >/dev/console
  reboot -f
  echo b >/proc/sysrq-trigger
}
fail() {
  say "setup failed: $*"
  finish 125
}

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
while read -r m; do
  insmod "/modules/$m" || say "could not load early module $m"
done </modules/load-order

mkdir -p /mnt/host /mnt/rw
mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=262144,cache=loose hostroot /mnt/host ||
  fail "mounting the host root (9p tag hostroot)"
mount -t tmpfs -o mode=0755 tmpfs /mnt/rw
mkdir -p /mnt/rw/upper /mnt/rw/work
mount -t overlay overlay -o lowerdir=/mnt/host,upperdir=/mnt/rw/upper,workdir=/mnt/rw/work /newroot ||
  fail "mounting the overlay over the host root"

# Fresh kernel filesystems in the new root, hiding the host's copies that the 9p share exposes.
mount -t proc proc /newroot/proc
mount -t sysfs sysfs /newroot/sys
mount -t devtmpfs devtmpfs /newroot/dev
mkdir -p /newroot/dev/pts /newroot/dev/shm
mount -t devpts -o ptmxmode=0666 devpts /newroot/dev/pts
mount -t tmpfs tmpfs /newroot/dev/shm
# /tmp stays the overlay: the host's /tmp is visible (a checkout may live there) and writes stay in the guest.
mount -t tmpfs -o mode=0755 tmpfs /newroot/run
mkdir -p /newroot/run/kmesh-vm
mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144 xfer /newroot/run/kmesh-vm ||
  fail "mounting the xfer share"
[ -f /newroot/run/kmesh-vm/command.sh ] || fail "no command.sh on the xfer share"

if [ "$mode" = shell ]; then
  say "starting a shell (leave with 'exit'; the VM then powers off)"
  setsid cttyhack chroot /newroot /bin/sh /run/kmesh-vm/command.sh
  finish $?
fi

stty -F /dev/ttyS1 raw -echo 2>/dev/null || fail "no second serial port (ttyS1) for the command's output"
rm -f /rc
(
  chroot /newroot /bin/sh /run/kmesh-vm/command.sh </dev/null 2>&1
  echo $? >/rc
) | cat >/dev/ttyS1 &
pipeline=$!
while [ ! -f /rc ]; do sleep 0.2; done
# The command is done; give its output a moment to drain, then end whatever it left running.
n=0
while kill -0 "$pipeline" 2>/dev/null && [ $n -lt 15 ]; do
  sleep 0.2
  n=$((n + 1))
done
kill -0 "$pipeline" 2>/dev/null && say "processes left running by the command are being killed"
kill -9 -1 2>/dev/null
finish "$(cat /rc)"
