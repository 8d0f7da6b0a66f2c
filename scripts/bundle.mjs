#!/usr/bin/env node
// Bundles the two executables (after tsc has compiled them to dist/) into one CommonJS file each, which bin/
// loads through bin/load-bundle.js with a V8 code cache kept beside the bundle (*.bundle.cjs.v8cache):
//   dist/src/cli/kmeshctl.bundle.cjs           <- dist/src/cli/kmeshctl.js      (bin/kmeshctl.js)
//   dist/src/daemon/kmesh-daemon.bundle.cjs    <- dist/src/daemon/main.js       (bin/kmesh-daemon.js)
// Why: loading the compiled code module by module took over a second for kmeshctl and the daemon's Kubernetes
// source, nearly all of it resolving and evaluating @kubernetes/client-node's ~1000 files. One file holding only
// what runs (the client's config module and auth plugins; its generated APIs, node-fetch, proxy agents and
// oidc/azure/gcp libraries load on first use, see esbuild-lazy-imports.mjs; @kubernetes/client-node stays a
// runtime dependency for them) starts in tens of milliseconds, and the code cache removes most compile time.
// Each bundle stays at the depth of the modules it replaces (dist/src/X/), so paths computed from the module's
// own location (the native addon's package root) resolve as before. Old caches are deleted: the first run after
// a build writes fresh ones.
// Usage: node scripts/bundle.mjs   (part of `npm run build:ts`)
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';
import { bundleOptions } from './bundle-options.mjs';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const BUNDLES = [
  { entry: 'dist/src/cli/kmeshctl.js', outfile: 'dist/src/cli/kmeshctl.bundle.cjs' },
  { entry: 'dist/src/daemon/main.js', outfile: 'dist/src/daemon/kmesh-daemon.bundle.cjs' },
];

for (const bundle of BUNDLES) {
  const entry = path.join(root, bundle.entry);
  const outfile = path.join(root, bundle.outfile);
  if (!fs.existsSync(entry)) {
    process.stderr.write(`bundle: ${bundle.entry} is missing: run tsc first (npm run build:ts)\n`);
    process.exit(1);
  }
  const result = await build(bundleOptions(entry, outfile));
  fs.rmSync(`${outfile}.v8cache`, { force: true });
  const bytes = Object.values(result.metafile.outputs)[0]?.bytes ?? fs.statSync(outfile).size;
  process.stdout.write(`bundle: ${bundle.outfile} (${(bytes / 1024).toFixed(0)} KiB)\n`);
}
