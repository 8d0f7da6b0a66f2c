# Sourced (POSIX sh) by every VM run's command.sh, inside the guest's chroot, before the test command.
# Makes the guest kernel's modules visible to the host's modprobe, loads what the datapath tests use
# (a missing module is not an error: the test that needs it reports it), mounts bpffs and debugfs, and
# brings up loopback. Expects KMESH_VM_KERNEL_DIR (the unpacked kernel directory in the host cache).
# With KMESH_VM_NIC_NAME and KMESH_VM_NIC_CIDR (a run with a guest forward), also brings up the virtio NIC
# of qemu's user network under that name and address in the guest's root network namespace; failing that is
# a setup failure (the run's command needs the forward).
kmesh_vm_kver=$(uname -r)
if [ ! -d "/usr/lib/modules/$kmesh_vm_kver/kernel" ]; then
  mkdir -p "/usr/lib/modules/$kmesh_vm_kver"
  mount --bind "$KMESH_VM_KERNEL_DIR/usr/lib/modules/$kmesh_vm_kver" "/usr/lib/modules/$kmesh_vm_kver"
fi
# Order matters for the crypto self-tests: drbg needs an entropy source and its ctr(aes)/hmac bases first,
# or it fails them and every ESP state is refused with "unable to initialize cryptographic operations".
for kmesh_vm_mod in jitterentropy_rng aes_generic aesni_intel ctr sha256_generic sha512_generic hmac drbg \
  seqiv echainiv gcm ghash_generic ghash-clmulni-intel xfrm_algo xfrm_user esp4 esp6 xfrm4_tunnel \
  xfrm6_tunnel tunnel4 tunnel6 ip6_tunnel xfrm_interface veth bridge af_packet sch_ingress cls_bpf act_bpf \
  cls_matchall cls_flower cls_u32 act_skbedit act_gact nf_tables nft_compat nft_ct nf_conntrack ip_tables \
  iptable_mangle iptable_filter xt_mark xt_comment; do
  modprobe -q "$kmesh_vm_mod" 2>/dev/null || true
done
mountpoint -q /sys/fs/bpf || mount -t bpf bpf /sys/fs/bpf
mountpoint -q /sys/kernel/debug || mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null || true
ip link set lo up
if [ -n "${KMESH_VM_NIC_NAME:-}" ]; then
  modprobe -q virtio_net 2>/dev/null || true
  kmesh_vm_nic=
  for kmesh_vm_dev in /sys/class/net/*; do
    if [ "$(basename "$(readlink "$kmesh_vm_dev/device/driver" 2>/dev/null)")" = virtio_net ]; then
      kmesh_vm_nic=$(basename "$kmesh_vm_dev")
      break
    fi
  done
  if [ -z "$kmesh_vm_nic" ]; then
    echo "kmesh-vm: setup failed: no virtio_net interface for the guest forward" >/dev/console
    exit 125
  fi
  if [ "$kmesh_vm_nic" != "$KMESH_VM_NIC_NAME" ]; then
    ip link set dev "$kmesh_vm_nic" name "$KMESH_VM_NIC_NAME"
  fi
  if ! ip addr add "$KMESH_VM_NIC_CIDR" dev "$KMESH_VM_NIC_NAME" || ! ip link set "$KMESH_VM_NIC_NAME" up; then
    echo "kmesh-vm: setup failed: could not configure $KMESH_VM_NIC_NAME ($KMESH_VM_NIC_CIDR)" >/dev/console
    exit 125
  fi
fi
hostname kmesh-vm 2>/dev/null || true
unset kmesh_vm_kver kmesh_vm_mod kmesh_vm_nic kmesh_vm_dev
