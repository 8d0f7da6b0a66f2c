#!/usr/bin/env bash
# Builds (or takes from its cache) the real Kubernetes control plane the tests run against:
# kube-apiserver and kube-controller-manager from Debian's `kubernetes` source package (bookworm,
# v1.20.2 with vendor/), compiled with Debian's golang-1.19, plus Debian's etcd-server (and kubectl from
# kubernetes-client when none is on PATH). The binaries land in $KMESH_K8S_CACHE/<source version>-<recipe>/bin
# (default ~/.cache/kmesh-ipsec/k8s: a machine-wide cache outside the checkout, so every clone and CI run on the
# machine pays the build once); `$KMESH_K8S_CACHE/current` points there. Nothing is downloaded outside Debian's archive: the source comes through a
# private apt state that adds deb-src entries without touching the system's lists. Safe to run again: a cache
# hit takes milliseconds. The recipe part of the key hashes this script from its "recipe" marker on, so a
# changed recipe rebuilds.
# Usage: scripts/build-control-plane.sh [--print-dir]
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
CACHE=${KMESH_K8S_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kmesh-ipsec/k8s}
mkdir -p "$CACHE"
log() { echo "control-plane: $*" >&2; }
RECIPE=$(sed -n '/^# ---- recipe ----$/,$p' "$0" | sha256sum | cut -c1-12)

ensure_apt() {
  local missing=() p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  if ((${#missing[@]})); then
    log "installing apt packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
}

command -v kubectl >/dev/null 2>&1 || ensure_apt kubernetes-client
ensure_apt etcd-server openssl
# etcd-server's package starts a system etcd on 2379; the tests run their own on ephemeral ports.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet etcd 2>/dev/null; then
  systemctl disable --now etcd >/dev/null 2>&1 || true
fi

# Private apt state with deb-src entries for bookworm (the system's own lists are left alone).
APT_DIR=$CACHE/apt
mkdir -p "$APT_DIR/lists/partial" "$APT_DIR/archives/partial"
cat > "$APT_DIR/sources.list" <<SRC
deb-src http://deb.debian.org/debian bookworm main
deb-src http://deb.debian.org/debian bookworm-updates main
deb-src http://deb.debian.org/debian-security bookworm-security main
SRC
APT_OPTS=(-o "Dir::Etc::SourceList=$APT_DIR/sources.list" -o "Dir::Etc::SourceParts=/dev/null"
  -o "Dir::State::Lists=$APT_DIR/lists" -o "Dir::Cache::Archives=$APT_DIR/archives" -o "APT::Sandbox::User=root")

VERSION_FILE=$CACHE/source-version
if [[ ! -s $VERSION_FILE || -n ${KMESH_K8S_REFRESH:-} ]]; then
  apt-get "${APT_OPTS[@]}" update -qq
  apt-cache "${APT_OPTS[@]}" showsrc kubernetes | sed -n 's/^Version: //p' | sort -V | tail -1 > "$VERSION_FILE"
fi
SRC_VERSION=$(cat "$VERSION_FILE")
[[ -n $SRC_VERSION ]] || { log "error: Debian's kubernetes source package was not found"; exit 1; }
KEY=${SRC_VERSION//[:+~]/_}
OUT=$CACHE/$KEY-$RECIPE
if [[ -x $OUT/bin/kube-apiserver && -x $OUT/bin/kube-controller-manager ]]; then
  ln -sfn "$OUT" "$CACHE/current"
  if [[ ${1:-} == --print-dir ]]; then echo "$OUT/bin"; fi
  exit 0
fi

# ---- recipe ----
ensure_apt golang-1.19-go golang-github-modern-go-reflect2-dev dpkg-dev
# The source package's files are kept (~25 MB) so that a changed recipe does not fetch them again.
SRC_DIR=$CACHE/src-$KEY
if ! compgen -G "$SRC_DIR/*.dsc" >/dev/null; then
  log "fetching Debian source package kubernetes $SRC_VERSION"
  rm -rf "$SRC_DIR.tmp"; mkdir -p "$SRC_DIR.tmp"
  if ! (cd "$SRC_DIR.tmp" && apt-get "${APT_OPTS[@]}" source --download-only -qq "kubernetes=$SRC_VERSION" >/dev/null 2>&1); then
    apt-get "${APT_OPTS[@]}" update -qq
    (cd "$SRC_DIR.tmp" && apt-get "${APT_OPTS[@]}" source --download-only -qq "kubernetes=$SRC_VERSION" >/dev/null)
  fi
  rm -rf "$SRC_DIR"; mv "$SRC_DIR.tmp" "$SRC_DIR"
fi
WORK=$CACHE/work
rm -rf "$WORK" "$CACHE"/work-*; mkdir -p "$WORK"
log "unpacking the source"
dpkg-source --no-check -x "$(compgen -G "$SRC_DIR/*.dsc" | head -1)" "$WORK/kubernetes" >/dev/null
[[ -d $WORK/kubernetes/vendor ]] || { log "error: the unpacked source has no vendor/ tree"; exit 1; }
KUBE_VERSION=v$(sed -E 's/.*really//; s/-.*//' <<<"$SRC_VERSION")

# GOPATH mode: the tree is k8s.io/kubernetes, vendor/ resolves every import. GOCACHE survives rebuilds.
export GOPATH=$WORK/gopath GO111MODULE=off GOCACHE=$CACHE/gocache CGO_ENABLED=0 GOFLAGS=
export PATH=/usr/lib/go-1.19/bin:$PATH
mkdir -p "$GOPATH/src/k8s.io"
ln -sfn "$WORK/kubernetes" "$GOPATH/src/k8s.io/kubernetes"
cd "$GOPATH/src/k8s.io/kubernetes"

# reflect2 1.0.1 (vendored) crashes the apiserver under Go >= 1.18; Debian ships 1.0.2.
rm -rf vendor/github.com/modern-go/reflect2
cp -r /usr/share/gocode/src/github.com/modern-go/reflect2 vendor/github.com/modern-go/reflect2

# pkg/generated/openapi/zz_generated.openapi.go is made by `make`, not shipped. As Makefile.generated_files
# does: every package with a .go file tagged +k8s:openapi-gen= (staging/ is what vendor/k8s.io links to).
log "generating OpenAPI definitions"
go build -o "$WORK/openapi-gen" ./vendor/k8s.io/kube-openapi/cmd/openapi-gen
grep -rl --include='*.go' -E '^// ?\+k8s:openapi-gen=' pkg cmd staging/src/k8s.io vendor \
  | grep -v '_test\.go$' | xargs -n1 dirname | sed -E 's#^staging/src/#vendor/#; s#^#k8s.io/kubernetes/#' \
  | sort -u > "$WORK/openapi-packages"
"$WORK/openapi-gen" --input-dirs "$(paste -sd, "$WORK/openapi-packages")" \
  --output-package k8s.io/kubernetes/pkg/generated/openapi --output-base "$GOPATH/src" \
  -O zz_generated.openapi --go-header-file hack/boilerplate/boilerplate.generatego.txt \
  --report-filename "$WORK/openapi-report" >/dev/null 2>&1
log "OpenAPI definitions from $(wc -l < "$WORK/openapi-packages") packages"

LDFLAGS="-s -w"
for p in k8s.io/kubernetes/vendor/k8s.io/client-go/pkg/version k8s.io/kubernetes/vendor/k8s.io/component-base/version; do
  LDFLAGS+=" -X $p.gitVersion=$KUBE_VERSION -X $p.gitMajor=1 -X $p.gitMinor=$(cut -d. -f2 <<<"$KUBE_VERSION")"
  LDFLAGS+=" -X $p.gitTreeState=clean -X $p.gitCommit=debian-$SRC_VERSION"
done
mkdir -p "$OUT/bin"
for cmd in kube-apiserver kube-controller-manager; do
  log "building $cmd $KUBE_VERSION (minutes on two cores; cached afterwards)"
  go build -ldflags "$LDFLAGS" -o "$OUT/bin/$cmd.tmp" "./cmd/$cmd"
  mv "$OUT/bin/$cmd.tmp" "$OUT/bin/$cmd"
done
cd "$ROOT"
rm -rf "$WORK"
# Older recipes' binaries are no longer used.
find "$CACHE" -mindepth 1 -maxdepth 1 -type d -name "$KEY-*" ! -path "$OUT" -exec rm -rf {} +
ln -sfn "$OUT" "$CACHE/current"
log "built into $OUT/bin"
if [[ ${1:-} == --print-dir ]]; then echo "$OUT/bin"; fi
