#!/usr/bin/env bash
# Fetches the guest kernels of the kernel-test VM from Debian's own archive and unpacks them into the
# git-ignored cache, never installing them system-wide:
#   6.1  = bookworm's linux-image-amd64 (6.1 LTS; no TCX)
#   6.12 = bookworm-backports' linux-image-amd64 (has TCX)
# The apt lists live in a private state directory under the cache; the backports source is derived from the
# machine's own bookworm entry (same mirror, same keyring), so nothing of the system's apt setup changes.
# Each kernel ends up in .cache/vm/kernels/<name>/ with the package unpacked (boot/, usr/lib/modules/),
# modules.dep built by depmod, an initramfs (test/vm/build-initramfs.sh) and kernel.env describing it.
# Re-running skips kernels that are complete; `--refresh` re-resolves the newest package and replaces them.
# Usage: test/vm/fetch-kernels.sh [--refresh] [6.1] [6.12]
set -euo pipefail
cd "$(dirname "$0")/../.."

CACHE=.cache/vm
APT_STATE=$CACHE/apt
refresh=0
wanted=()
for arg in "$@"; do
  case "$arg" in
    --refresh) refresh=1 ;;
    6.1 | 6.12) wanted+=("$arg") ;;
    *)
      echo "fetch-kernels: unknown argument '$arg' (expected --refresh, 6.1 or 6.12)" >&2
      exit 2
      ;;
  esac
done
[ ${#wanted[@]} -gt 0 ] || wanted=(6.1 6.12)

for tool in apt-get apt-cache dpkg-deb depmod modprobe cpio busybox xz; do
  command -v "$tool" >/dev/null || {
    echo "fetch-kernels: '$tool' is missing (scripts/setup.sh installs it)" >&2
    exit 1
  }
done

complete() { # complete <kernel dir>: kernel.env present and everything it names exists
  [ -f "$1/kernel.env" ] || return 1
  # shellcheck disable=SC1091
  (. "$1/kernel.env" && [ -f "$1/$VMLINUZ" ] && [ -f "$1/usr/lib/modules/$KVER/modules.dep" ] && [ -f "$1/initramfs.cpio.gz" ])
}

todo=()
for k in "${wanted[@]}"; do
  if [ "$refresh" = 1 ] || ! complete "$CACHE/kernels/$k"; then todo+=("$k"); fi
done
if [ ${#todo[@]} -eq 0 ]; then
  echo "fetch-kernels: guest kernels ${wanted[*]} already in $CACHE/kernels"
  exit 0
fi

# --- private apt configuration: the system's sources plus bookworm-backports on the same mirror ---------
mkdir -p "$APT_STATE/sources.d" "$APT_STATE/lists/partial" "$APT_STATE/cache/archives/partial"
rm -f "$APT_STATE"/sources.d/*
for f in /etc/apt/sources.list.d/*.sources /etc/apt/sources.list.d/*.list; do
  [ -f "$f" ] && cp "$f" "$APT_STATE/sources.d/"
done
[ -f /etc/apt/sources.list ] && cp /etc/apt/sources.list "$APT_STATE/sources.d/system.list"

# The mirror URI and keyring of the entry that carries the plain `bookworm` suite (deb822 or one-line form).
bookworm_entry() {
  local f
  for f in "$APT_STATE"/sources.d/*.sources; do
    [ -f "$f" ] && cat "$f" && echo
  done | awk '
    /^[[:space:]]*#/ { next }
    /^[[:space:]]*$/ { if (suites ~ / bookworm / && uris != "") { print uris, signed; exit }
                       uris = ""; suites = " "; signed = "-"; next }
    $1 == "URIs:" { uris = $2 }
    $1 == "Suites:" { suites = " "; for (i = 2; i <= NF; i++) suites = suites $i " " }
    $1 == "Signed-By:" { signed = $2 }
  '
  for f in "$APT_STATE"/sources.d/*.list; do
    [ -f "$f" ] && cat "$f"
  done | awk '
    $1 != "deb" { next }
    { i = 2; signed = "-"
      if ($2 ~ /^\[/) {
        for (; i <= NF; i++) {
          if ($i ~ /signed-by=/) { s = $i; sub(/.*signed-by=/, "", s); sub(/\]$/, "", s); signed = s }
          if ($i ~ /\]$/) { i++; break }
        }
      }
      if ($(i + 1) == "bookworm") { print $i, signed; exit } }
  '
}
read -r mirror keyring < <(bookworm_entry | head -n 1) || true
if [ -z "${mirror:-}" ]; then
  echo "fetch-kernels: no apt source for the 'bookworm' suite found in /etc/apt; cannot locate Debian's archive" >&2
  exit 1
fi
{
  echo "Types: deb"
  echo "URIs: $mirror"
  echo "Suites: bookworm-backports"
  echo "Components: main"
  [ "$keyring" != "-" ] && echo "Signed-By: $keyring"
} >"$APT_STATE/sources.d/zz-kmesh-vm-backports.sources"

APT_OPTS=(-o APT::Sandbox::User=root -o "Dir::Etc::SourceParts=$PWD/$APT_STATE/sources.d" -o "Dir::Etc::SourceList=/dev/null"
  -o "Dir::State::Lists=$PWD/$APT_STATE/lists" -o "Dir::Cache=$PWD/$APT_STATE/cache")
echo "fetch-kernels: updating private apt lists ($APT_STATE)"
apt-get -qq "${APT_OPTS[@]}" update

resolve() { # resolve <kernel>: the concrete linux-image package behind the linux-image-amd64 metapackage
  local target=()
  [ "$1" = 6.12 ] && target=(-t bookworm-backports)
  apt-cache "${APT_OPTS[@]}" "${target[@]}" depends linux-image-amd64 |
    awk '$1 == "Depends:" && $2 ~ /^linux-image-[0-9]/ { print $2; exit }'
}

for k in "${todo[@]}"; do
  pkg=$(resolve "$k")
  case "$k:$pkg" in
    6.1:linux-image-6.1.* | 6.12:linux-image-6.12.*) ;;
    *)
      echo "fetch-kernels: kernel $k: linux-image-amd64 resolves to '${pkg:-nothing}', not a $k kernel" >&2
      exit 1
      ;;
  esac
  dest=$CACHE/kernels/$k
  stage=$CACHE/kernels/.stage-$k
  rm -rf "$stage"
  mkdir -p "$stage/root"
  echo "fetch-kernels: kernel $k: downloading $pkg"
  (cd "$stage" && apt-get -qq "${APT_OPTS[@]}" download "$pkg")
  deb=$(ls "$stage"/*.deb)
  dpkg-deb -x "$deb" "$stage/root"
  rm -f "$deb"
  kver=${pkg#linux-image-}
  vmlinuz=boot/vmlinuz-$kver
  [ -f "$stage/root/$vmlinuz" ] || {
    echo "fetch-kernels: $pkg has no $vmlinuz" >&2
    exit 1
  }
  if [ -d "$stage/root/lib/modules" ] && [ ! -d "$stage/root/usr/lib/modules" ]; then
    # Keep modules under usr/lib: a top-level lib/ would shadow the host's /lib -> usr/lib link in the guest.
    mkdir -p "$stage/root/usr/lib"
    mv "$stage/root/lib/modules" "$stage/root/usr/lib/modules"
    rmdir "$stage/root/lib" 2>/dev/null || true
  fi
  # Decompress the modules once here: the emulated guest takes ~0.2 s of CPU per xz module when loading it.
  find "$stage/root/usr/lib/modules/$kver" -name '*.ko.xz' -print0 | xargs -0 -r -P 2 -n 200 xz -d
  if [ -n "$(find "$stage/root/usr/lib/modules/$kver" -name '*.ko.zst' -print -quit)" ]; then
    command -v zstd >/dev/null || {
      echo "fetch-kernels: $pkg has zstd-compressed modules and 'zstd' is missing" >&2
      exit 1
    }
    find "$stage/root/usr/lib/modules/$kver" -name '*.ko.zst' -print0 | xargs -0 -r -P 2 -n 200 zstd -qd --rm
  fi
  depmod -b "$stage/root/usr" "$kver"
  cat >"$stage/root/kernel.env" <<EOF
# Written by test/vm/fetch-kernels.sh
KERNEL=$k
PACKAGE=$pkg
KVER=$kver
VMLINUZ=$vmlinuz
EOF
  test/vm/build-initramfs.sh "$stage/root"
  rm -rf "$dest"
  mv "$stage/root" "$dest"
  rm -rf "$stage"
  echo "fetch-kernels: kernel $k ready: $pkg ($(du -sh "$dest" | cut -f1))"
done
