// What bench:scale's Kubernetes source is loaded from (--source kube): bundled at run time with the executables'
// esbuild options (scripts/bundle-options.mjs) into scale-kube-source.bundle.cjs beside it, so the bench's process
// loads @kubernetes/client-node as the daemon's bundle does (its generated APIs on first use only, ~26 MiB of heap
// when imported unbundled) and the RSS it prints is the daemon's.
export { KubeSource } from '../../src/daemon/sources/kube-source.js';
export { loadKubeConfig } from '../../src/kube/client.js';
