#!/usr/bin/env node
// Bundles kmeshctl (after tsc has compiled it to dist/) into one CommonJS file, dist/src/cli/kmeshctl.bundle.cjs,
// which bin/kmeshctl.js loads. Why: loading the compiled CLI module by module took over a second, nearly all of it
// resolving and evaluating @kubernetes/client-node's ~1000 files. One file with only what runs (the client's config
// module and auth plugins; its generated APIs, node-fetch, proxy agents and oidc/azure/gcp libraries load on first
// use, see esbuild-lazy-imports.mjs; @kubernetes/client-node stays a runtime dependency for them) starts in a few tens of milliseconds, and the V8 code cache that
// bin/kmeshctl.js keeps beside it (kmeshctl.bundle.cjs.v8cache) removes most of the compile time that is left.
// The cache is deleted here so the first run after a build writes a fresh one.
// Usage: node scripts/bundle.mjs   (part of `npm run build:ts`)
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';
import { lazyImports } from './esbuild-lazy-imports.mjs';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const entry = path.join(root, 'dist/src/cli/kmeshctl.js');
const outfile = path.join(root, 'dist/src/cli/kmeshctl.bundle.cjs');

if (!fs.existsSync(entry)) {
  process.stderr.write(`bundle: ${path.relative(root, entry)} is missing: run tsc first (npm run build:ts)\n`);
  process.exit(1);
}

const result = await build({
  entryPoints: [entry],
  outfile,
  bundle: true,
  platform: 'node',
  format: 'cjs',
  target: 'node20',
  // Keep dynamic import() of our own modules lazy, and the output readable in stack traces during development.
  splitting: false,
  minify: false,
  legalComments: 'inline',
  logLevel: 'warning',
  metafile: true,
  plugins: [
    lazyImports({
      importer: /node_modules[\\/]@kubernetes[\\/]client-node[\\/]dist[\\/][^\\/]+\.js$/,
      modules: {
        // Only makeApiClient needs these (14 MB of generated APIs and models); kmeshctl makes no generated calls.
        './gen/index.js': 'runtime',
        // applyToFetchOptions, proxy-url, azure/gcp token paths: CommonJS packages, required when first used.
        'node-fetch': 'runtime',
        'socks-proxy-agent': 'runtime',
        hpagent: 'runtime',
        'jsonpath-plus': 'runtime',
        // The oidc auth plugin: an ES module, so bundled (works on every Node 20) but run only when used.
        'openid-client': 'bundle',
      },
    }),
  ],
});
fs.rmSync(`${outfile}.v8cache`, { force: true });
const bytes = result.metafile.outputs[path.relative(process.cwd(), outfile)]?.bytes ?? fs.statSync(outfile).size;
process.stdout.write(`bundle: ${path.relative(root, outfile)} (${(bytes / 1024).toFixed(0)} KiB)\n`);
