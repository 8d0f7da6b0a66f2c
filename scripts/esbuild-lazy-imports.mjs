// esbuild plugin: turns chosen static imports into imports that load their module on first use. Used for the parts
// of @kubernetes/client-node's config module that kmeshctl rarely or never needs: importing that module statically
// pulls in every generated API and model (used only by makeApiClient), node-fetch with its URL tables (only for
// applyToFetchOptions), the SOCKS and HTTP proxy agents (only with a proxy-url) and the oidc / azure / gcp plugins'
// libraries (only for those auth providers). All of them stay usable; they just cost nothing until used.
//
// lazyImports({ importer, modules })
//   importer  RegExp of the importing files whose imports are made lazy (other importers get the eager module)
//   modules   { specifier: 'bundle' | 'runtime' }, the specifier exactly as written in those files:
//     'bundle'   the module is bundled, wrapped so that its top-level code runs on first use
//     'runtime'  the module is left out of the bundle and require()d from node_modules on first use, resolved as
//                the importing file would resolve it; for big modules (the generated client is 14 MB), so the bundle
//                stays small. An ES module loaded this way needs Node's require(esm) (Node >= 20.19).
// The function and class exports of a lazy module (found at build time by importing it) become forwarders that load
// the module and then call the export, or construct it with `new`. Other exports (constants) are left out of the
// stand-in, and using one from the importer fails the build: a named import of it is already an esbuild error, and
// reading it from a namespace import (the 'import-is-undefined' warning) is made one.
import { pathToFileURL } from 'node:url';

const NAMESPACE = 'lazy-import';
const IDENTIFIER = /^[A-Za-z_$][\w$]*$/;

/** The names of a module's function and class exports, as Node sees them. */
async function functionExports(file) {
  const namespace = await import(pathToFileURL(file).href);
  return Object.keys(namespace).filter(
    (name) => name !== 'default' && typeof namespace[name] === 'function' && IDENTIFIER.test(name),
  );
}

/** `/x/node_modules/@scope/pkg/dist/a.js` -> `@scope/pkg/dist/a.js`: how the bundle finds the importer at run time. */
function packagePath(file) {
  const parts = file.split(/[\\/]node_modules[\\/]/);
  const tail = parts.at(-1);
  if (parts.length < 2 || tail === undefined) throw new Error(`lazy-imports: ${file} is not inside node_modules`);
  return tail.split(/[\\/]/).join('/');
}

/** Code that loads the real module: bundled (esbuild resolves the require) or from node_modules at run time. */
function loader(mode, real, importer, specifier) {
  if (mode === 'bundle') return `require(${JSON.stringify(real)})`;
  return (
    `require('node:module').createRequire(` +
    `require('node:module').createRequire(__filename).resolve(${JSON.stringify(packagePath(importer))}))` +
    `(${JSON.stringify(specifier)})`
  );
}

function shimSource(load, names, specifier) {
  const lines = [
    `// Lazy stand-in for ${JSON.stringify(specifier)}: the module is loaded on the first use of one of its exports.`,
    `let loaded;`,
    `const load = () => (loaded ??= ${load});`,
  ];
  for (const name of names) {
    lines.push(
      `export function ${name}(...args) {`,
      `  const target = load()[${JSON.stringify(name)}];`,
      `  return new.target ? Reflect.construct(target, args) : target.apply(this, args);`,
      `}`,
    );
  }
  return lines.join('\n');
}

export function lazyImports({ importer, modules }) {
  return {
    name: 'lazy-imports',
    setup(build) {
      const options = build.initialOptions;
      options.logOverride = { ...options.logOverride, 'import-is-undefined': 'error' };
      build.onResolve({ filter: /.*/ }, async (args) => {
        const mode = Object.hasOwn(modules, args.path) ? modules[args.path] : undefined;
        if (args.kind !== 'import-statement' || mode === undefined || !importer.test(args.importer)) return undefined;
        const real = await build.resolve(args.path, { kind: 'require-call', resolveDir: args.resolveDir });
        if (real.errors.length > 0) return { errors: real.errors };
        return {
          path: real.path,
          namespace: NAMESPACE,
          pluginData: { load: loader(mode, real.path, args.importer, args.path), specifier: args.path },
        };
      });
      build.onLoad({ filter: /.*/, namespace: NAMESPACE }, async (args) => ({
        contents: shimSource(args.pluginData.load, await functionExports(args.path), args.pluginData.specifier),
        loader: 'js',
        resolveDir: '/',
      }));
    },
  };
}
