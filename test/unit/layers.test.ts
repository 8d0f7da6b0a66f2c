// The import directions of src/: every top-level folder is a layer, and a module may import only from its own
// folder or from a lower layer. The order follows what the code is:
//
//   0  model, util              plain data and pure values every layer speaks (nodes, keys, marks, addresses);
//                               domain-free helpers (atomic file write, an error's first line)
//   1  native, keys             the addon loader; key derivation and key history
//   2  xfrm, datapath, kube     one kernel or API surface each: XFRM (vocabulary, identity rules, netlink),
//                               the BPF datapath, the Kubernetes client
//   3  ipsec, secret            policy over those surfaces: planning and reconciling XFRM state; the
//                               kmesh-ipsec Secret's payload and stores
//   4  daemon                   the node daemon: sources, loop, adapters, wiring
//   5  cli, demo                entry points
//
// Folders on the same layer do not import each other. Nothing in src/ imports from test/ (test doubles and
// scenario scripts live there and are not shipped), with one named exception below.
// The imports are read with TypeScript's own pre-processor: static imports, re-exports, import() and
// `typeof import()`.
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import ts from 'typescript';

const LAYERS: Record<string, number> = {
  model: 0,
  util: 0,
  native: 1,
  keys: 1,
  xfrm: 2,
  datapath: 2,
  kube: 2,
  ipsec: 3,
  secret: 3,
  daemon: 4,
  cli: 5,
  demo: 5,
};

/**
 * Imports from src/ into the checkout outside src/ that are allowed, with the reason. The demo falls back to
 * the kernel-test VM when the host kernel cannot do ESP; that only works from a checkout (qemu, guest
 * kernels), so it loads the runner from dist/test at run time.
 */
const OUTSIDE_SRC_ALLOWED = new Set(['src/demo/main.ts -> test/vm/runner.js']);

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

function sourceFiles(dir: string): string[] {
  return fs.readdirSync(path.join(root, dir), { withFileTypes: true }).flatMap((e) => {
    const rel = `${dir}/${e.name}`;
    if (e.isDirectory()) return sourceFiles(rel);
    return e.name.endsWith('.ts') ? [rel] : [];
  });
}

interface Edge {
  from: string;
  /** Repository-relative target, as written (.js) */
  to: string;
}

function edges(file: string): Edge[] {
  const info = ts.preProcessFile(fs.readFileSync(path.join(root, file), 'utf8'), true, true);
  return info.importedFiles
    .map((f) => f.fileName)
    .filter((spec) => spec.startsWith('.'))
    .map((spec) => ({ from: file, to: path.posix.normalize(path.posix.join(path.posix.dirname(file), spec)) }));
}

const layerOf = (file: string): string => file.split('/')[1] ?? '';

const files = sourceFiles('src');
const all = files.flatMap(edges);

t.test('every folder of src/ has a layer', (t) => {
  const folders = [...new Set(files.map(layerOf))].sort();
  t.same(
    folders.filter((f) => LAYERS[f] === undefined),
    [],
    'a new folder needs a place in LAYERS (and in this header)',
  );
  t.end();
});

t.test('the pre-processor sees the imports (the check below is not vacuous)', (t) => {
  t.ok(all.length > 150, `${all.length} relative imports read`);
  t.ok(
    all.some((e) => e.from === 'src/daemon/main.ts' && e.to === 'src/kube/client.js'),
    'a dynamic import() is seen',
  );
  t.end();
});

t.test('no import runs from a lower layer to a higher one or across a layer', (t) => {
  const wrong = all
    .filter((e) => e.to.startsWith('src/'))
    .filter((e) => {
      const from = layerOf(e.from);
      const to = layerOf(e.to);
      return from !== to && !((LAYERS[to] ?? Infinity) < (LAYERS[from] ?? -Infinity));
    })
    .map((e) => `${e.from} (${layerOf(e.from)}) -> ${e.to} (${layerOf(e.to)})`);
  t.same(wrong, [], 'imports against the layer order');
  t.end();
});

t.test('src/ imports nothing outside src/ (test doubles are not shipped)', (t) => {
  const outside = all
    .filter((e) => !e.to.startsWith('src/'))
    .map((e) => `${e.from} -> ${e.to}`)
    .filter((line) => !OUTSIDE_SRC_ALLOWED.has(line));
  t.same(outside, []);
  t.end();
});
