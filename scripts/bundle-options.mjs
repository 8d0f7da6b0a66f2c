// The esbuild options of the executables' bundles (scripts/bundle.mjs), shared with what must load code as they do:
// bench:scale's Kubernetes source (test/bench/scale-clusters.ts) is bundled with them, so the bench's process holds
// what the daemon's does and not @kubernetes/client-node's generated APIs, which the bundle loads on first use only.
//   bundleOptions(entry, outfile) -> the options for esbuild's build(): one CommonJS file for Node 20, with the
//   client's heavy modules lazy (esbuild-lazy-imports.mjs) and import.meta.url as the bundle's own URL.
import { lazyImports } from './esbuild-lazy-imports.mjs';

const clientNodeLazy = lazyImports({
  importer: /node_modules[\\/]@kubernetes[\\/]client-node[\\/]dist[\\/][^\\/]+\.js$/,
  modules: {
    './gen/index.js': 'runtime',
    'node-fetch': 'runtime',
    'socks-proxy-agent': 'runtime',
    hpagent: 'runtime',
    'jsonpath-plus': 'runtime',
    'openid-client': 'bundle',
  },
});

export function bundleOptions(entry, outfile) {
  return {
    entryPoints: [entry],
    outfile,
    bundle: true,
    platform: 'node',
    format: 'cjs',
    target: 'node20',
    // ES modules' import.meta.url, which a CommonJS bundle lacks: the bundle's own URL (same directory depth).
    define: { 'import.meta.url': '__bundleUrl' },
    banner: { js: "const __bundleUrl = require('node:url').pathToFileURL(__filename).href;" },
    minify: false,
    legalComments: 'inline',
    logLevel: 'warning',
    metafile: true,
    plugins: [clientNodeLazy],
  };
}
