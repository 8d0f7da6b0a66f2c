#!/usr/bin/env bash
# The README's main-job command: installs and builds everything a fresh Debian 12 machine lacks
# (scripts/setup.sh), then runs the three-node IPsec demo (`npm run demo`). Needs root. When the host
# kernel cannot do ESP, the demo says so and runs inside the kernel-test VM.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec npm run --silent demo
