#!/usr/bin/env bash
# Installs everything a fresh Debian 12 machine (root, Node 20) lacks for building, running and testing
# this project: apt packages, npm dependencies, the native addon, the BPF objects, the compiled TypeScript,
# the guest kernels of the kernel-test VM, and the real Kubernetes control plane the tests run against
# (etcd, kube-apiserver, kube-controller-manager; built once from Debian's source package and cached). Safe to run again: each step skips what is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(clang llvm libbpf-dev bpftool libelf-dev zlib1g-dev iproute2 tcpdump iptables nftables iputils-ping
  make g++ python3 xxd time)
APT_NO_RECOMMENDS=(qemu-system-x86 busybox-static cpio kmod)

missing=()
for p in "${APT_PACKAGES[@]}" "${APT_NO_RECOMMENDS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing apt packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "setup: installing npm dependencies"
  npm ci --no-audit --no-fund >/dev/null
fi

echo "setup: building (native addon, BPF objects, TypeScript)"
npm run --silent build >/dev/null

if [ -x test/vm/fetch-kernels.sh ]; then
  test/vm/fetch-kernels.sh
fi

scripts/build-control-plane.sh
echo "setup: done"
