#!/usr/bin/env bash
# The full test suite on a fresh machine: installs what is missing, builds, then runs every phase
# (checks, host tests, kernel-test VM suites) and ends with `N passed, N failed, N skipped`.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
# setup built the control plane: a real-control-plane suite that cannot find it must fail, not skip.
export CI="${CI:-true}"
exec node scripts/run-tests.mjs "$@"
