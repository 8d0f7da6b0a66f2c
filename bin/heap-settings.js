// The daemon's V8 heap settings, measured with `npm run bench:scale` at 5,000 peers (docs/benchmarks.md,
// "2026-12-05, branch `mem`"). Two kinds, by when V8 reads them:
// - LAUNCH_FLAGS size the heap when the isolate is created, so they must be on node's command line: the first
//   line of bin/kmesh-daemon.js carries them, and start_kmesh.sh runs the daemon through that line.
//   --max-semi-space-size=4: new space 2 x 4 MiB instead of 2 x 16 MiB (-30 to -47 MiB RSS, no measured CPU cost).
// - RUNTIME_FLAGS are read at every garbage collection; applyRuntimeFlags() sets them before the daemon loads.
//   --heap-growing-percent=30: after a full GC the old space may grow to 1.3x the live heap before the next one
//   (V8 picks up to 4x when the mutator allocates fast, as a 5,000-peer step does): -100 to -185 MiB RSS after a
//   rotation, for ~28 % more user CPU in that bench (more full GCs of the steps' promoted garbage). Kept because
//   deploy/daemonset.yaml limits the daemon to 256 Mi, which the default growth exceeds there.
// test/unit/daemon-heap-settings.test.ts checks that the daemon, started as the product starts it, runs with both.
// The scale bench (test/bench/scale.ts) runs under the same settings, so its figure is the product's.
'use strict';

const LAUNCH_FLAGS = Object.freeze(['--max-semi-space-size=4']);
const RUNTIME_FLAGS = Object.freeze(['--heap-growing-percent=30']);

function applyRuntimeFlags() {
  const v8 = require('node:v8');
  for (const flag of RUNTIME_FLAGS) v8.setFlagsFromString(flag);
}

module.exports = { LAUNCH_FLAGS, RUNTIME_FLAGS, applyRuntimeFlags };
