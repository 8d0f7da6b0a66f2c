// The daemon's memory settings, measured with `npm run bench:scale` at 5,000 peers (docs/benchmarks.md,
// "2026-12-05, branch `mem`" and "fourth session"). Three kinds, by when they are read:
// - LAUNCH_ENV is read by the C library when the process starts: the first line of bin/kmesh-daemon.js sets it.
//   MALLOC_ARENA_MAX=2: glibc gives each thread that mallocs (V8's GC and compiler threads) an arena of its own,
//   and keeps what they freed; two arenas in all hold 10-15 MiB less RSS after a rotation.
//   MALLOC_MMAP_THRESHOLD_=131072: blocks of 128 KiB and more (Node's large buffers: netlink dumps, directory
//   reads) are always mapped on their own and given back when freed. Without it glibc raises the threshold to
//   the largest block freed so far (up to 32 MiB), and the next such blocks come from the heap, which they leave
//   full of holes it rarely returns: -6 to -16 MiB RSS after a rotation (eight runs of bench:scale, alternating),
//   for ~10 % more user CPU in that bench (a map and an unmap per large block). Setting it also stops glibc
//   raising the trim threshold, which stays at 128 KiB.
// - LAUNCH_FLAGS size the heap when the isolate is created, so they must be on node's command line: the first
//   line of bin/kmesh-daemon.js carries them, and start_kmesh.sh runs the daemon through that line.
//   --max-semi-space-size=4: new space 2 x 4 MiB instead of 2 x 16 MiB (-30 to -47 MiB RSS, no measured CPU cost).
//   Not --optimize-for-size: -25 to -40 MiB RSS after a rotation, but bench:xfrm's one-peer step took 3 to 6
//   times as long (43-90 ms against 15 at 5,000 peers) and its audit dump 4 times. Nor, at run time,
//   --compact-on-every-full-gc: -20 MiB RSS after a rotation, but a peak of 312 MiB against 230 (every page is
//   evacuated before the old ones are given back).
// - RUNTIME_FLAGS are read at every garbage collection; applyRuntimeFlags() sets them before the daemon loads.
//   --heap-growing-percent=15: after a full GC the old space may grow to 1.15x the live heap before the next one
//   (V8 picks up to 4x when the mutator allocates fast, as a 5,000-peer step does): -100 to -185 MiB RSS after a
//   rotation at 30 %, against the default; 15 % gives -7 MiB more after a rotation and -11 MiB at the peak (three
//   alternating runs of bench:scale per value: 10 % 149-152 / peak 157-159, 15 % 148-154 / 161-164, 20 % 152-159 /
//   165-169, 30 % 155-164 / 172-180 MiB), for ~10 % more user CPU than 30 % in that bench (more full GCs of the
//   steps' promoted garbage; 30 % cost ~28 % against the default). Kept because deploy/daemonset.yaml limits the
//   daemon to 256 Mi, and the peak is what meets that limit.
// test/unit/daemon-heap-settings.test.ts checks that the daemon, started as the product starts it, runs with all.
// The scale bench (test/bench/scale.ts) runs under the same settings, so its figure is the product's.
'use strict';

const LAUNCH_ENV = Object.freeze({ MALLOC_ARENA_MAX: '2', MALLOC_MMAP_THRESHOLD_: '131072' });
const LAUNCH_FLAGS = Object.freeze(['--max-semi-space-size=4']);
const RUNTIME_FLAGS = Object.freeze(['--heap-growing-percent=15']);

function applyRuntimeFlags() {
  const v8 = require('node:v8');
  for (const flag of RUNTIME_FLAGS) v8.setFlagsFromString(flag);
}

module.exports = { LAUNCH_ENV, LAUNCH_FLAGS, RUNTIME_FLAGS, applyRuntimeFlags };
