#!/usr/bin/env bash
# Starts the Kmesh node daemon the way the Kmesh user guide shows:
#   ./start_kmesh.sh --mode=dual-engine --enable-bypass=false --enable-ipsec=true
# Checks the flags first (a bad flag changes nothing on the host), mounts bpffs at the --bpf-fs-path (default
# /sys/fs/bpf) when it is not mounted yet, then runs
# kmesh-daemon with every argument unchanged and forwards SIGTERM/SIGINT to it (the daemon leaves the
# datapath in place on SIGTERM); the script exits with the daemon's exit code. The daemon is run through its
# own first line (bin/kmesh-daemon.js), which gives node the heap flags (bin/heap-settings.js).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

# `kmesh-daemon --check-flags` validates exactly what the daemon will parse, and says what is wrong (exit 2).
case " $* " in
  *" -h "* | *" --help "* | *" --version "*) exec "$here/bin/kmesh-daemon.js" "$@" ;;
esac
"$here/bin/kmesh-daemon.js" --check-flags "$@" || exit $?

bpf_fs=/sys/fs/bpf
prev=''
for arg in "$@"; do
  case "$arg" in
    --bpf-fs-path=*) bpf_fs="${arg#--bpf-fs-path=}" ;;
  esac
  if [ "$prev" = "--bpf-fs-path" ]; then bpf_fs="$arg"; fi
  prev="$arg"
done

on_bpffs() { [ -d "$1" ] && [ "$(stat -f -c %T "$1")" = "bpf_fs" ]; }
# A --bpf-fs-path below /sys/fs/bpf needs the standard mount first (sysfs refuses mkdir).
case "$bpf_fs" in
  /sys/fs/bpf/*)
    if ! on_bpffs /sys/fs/bpf; then
      echo "start_kmesh.sh: mounting bpffs at /sys/fs/bpf" >&2
      mount -t bpf bpf /sys/fs/bpf
    fi ;;
esac
mkdir -p "$bpf_fs"
if ! on_bpffs "$bpf_fs"; then
  echo "start_kmesh.sh: mounting bpffs at $bpf_fs" >&2
  mount -t bpf bpf "$bpf_fs"
fi

"$here/bin/kmesh-daemon.js" "$@" &
child=$!
forward() { kill -s "$1" "$child" 2>/dev/null || true; }
trap 'forward TERM' TERM
trap 'forward INT' INT
rc=0
# `wait` returns early when a trapped signal arrives; keep waiting until the daemon has really exited.
while :; do
  wait "$child" && rc=0 || rc=$?
  kill -0 "$child" 2>/dev/null || break
done
exit "$rc"
