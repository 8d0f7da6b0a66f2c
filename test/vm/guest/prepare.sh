# Sourced (POSIX sh) by every VM run's command.sh, inside the guest's chroot, before the test command.
# Makes the guest kernel's modules visible to the host's modprobe, loads what the datapath tests use
# (a missing module is not an error: the test that needs it reports it), mounts bpffs and debugfs, and
# brings up loopback. Expects KMESH_VM_KERNEL_DIR (the unpacked kernel directory in the host cache).
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
hostname kmesh-vm 2>/dev/null || true
unset kmesh_vm_kver kmesh_vm_mod
