#!/usr/bin/env bash
# Builds the busybox initramfs of the kernel-test VM for one unpacked guest kernel (a directory made by
# test/vm/fetch-kernels.sh, with kernel.env, boot/ and usr/lib/modules/<KVER>/).
# Contents: static busybox, /init (test/vm/guest/init.sh), /sbin/modprobe forwarding module requests into
# the guest's chroot, and the few modules needed before the root exists (virtio PCI, 9p over virtio,
# overlayfs) decompressed and listed in dependency order. Output: <kernel dir>/initramfs.cpio.gz.
# Usage: test/vm/build-initramfs.sh <kernel dir>
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
kdir=${1:?usage: build-initramfs.sh <kernel dir>}
[ -f "$kdir/kernel.env" ] || {
  echo "build-initramfs: $kdir/kernel.env not found (run test/vm/fetch-kernels.sh)" >&2
  exit 1
}
# shellcheck disable=SC1091
. "$kdir/kernel.env"
busybox=$(command -v busybox)
if ldd "$busybox" >/dev/null 2>&1; then
  echo "build-initramfs: $busybox is dynamically linked; the initramfs needs busybox-static" >&2
  exit 1
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work"/{bin,sbin,dev,proc,sys,mnt,newroot,modules,etc}
cp "$busybox" "$work/bin/busybox"
install -m 0755 "$here/guest/init.sh" "$work/init"
cat >"$work/sbin/modprobe" <<'EOF'
#!/bin/busybox sh
# The kernel asks /sbin/modprobe of the initramfs for modules (crypto, xfrm, qdiscs); the modules and a
# real modprobe live in the chroot, so forward the request there once it exists.
[ -x /newroot/sbin/modprobe ] && exec /bin/busybox chroot /newroot /sbin/modprobe "$@"
exit 1
EOF
chmod 0755 "$work/sbin/modprobe"

# Modules needed to reach the root filesystem; those built into this kernel are reported as "builtin".
early=(virtio_pci virtio_console 9pnet_virtio 9p overlay)
: >"$work/modules/load-order"
modprobe -d "$kdir/usr" -S "$KVER" --show-depends -a "${early[@]}" | awk '$1 == "insmod" { print $2 }' |
  awk '!seen[$0]++' | while read -r path; do
    name=$(basename "$path")
    name=${name%.xz}
    name=${name%.zst}
    name=${name%.gz}
    case "$path" in
      *.xz) xz -dc "$path" >"$work/modules/$name" ;;
      *.zst) zstd -qdc "$path" >"$work/modules/$name" ;;
      *.gz) gzip -dc "$path" >"$work/modules/$name" ;;
      *) cp "$path" "$work/modules/$name" ;;
    esac
    echo "$name" >>"$work/modules/load-order"
  done
echo "$KVER" >"$work/etc/kernel-release"

(cd "$work" && find . -print0 | LC_ALL=C sort -z | cpio --null -o -H newc --quiet) | gzip -1 >"$kdir/initramfs.cpio.gz.tmp"
mv "$kdir/initramfs.cpio.gz.tmp" "$kdir/initramfs.cpio.gz"
echo "build-initramfs: $kdir/initramfs.cpio.gz ($(wc -l <"$work/modules/load-order") early modules)"
