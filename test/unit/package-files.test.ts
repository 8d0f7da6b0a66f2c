// What `npm pack` would ship (package.json "files" over the built checkout): the compiled product and nothing
// of the tests. Every file under dist/src/ must be the output of a module in src/ (a stale output of a moved
// or deleted module would otherwise ship: `npm run build:ts` starts from an empty dist/ for that reason), no
// test double or test scenario may ship, and the entry points the package declares must be inside.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const built = fs.existsSync(path.join(root, 'dist', 'src', 'daemon', 'main.js'));

function packedFiles(): string[] {
  const r = spawnSync('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: root, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`npm pack --dry-run failed: ${r.stderr}`);
  const [listing] = JSON.parse(r.stdout) as { files: { path: string }[] }[];
  return (listing?.files ?? []).map((f) => f.path);
}

t.test(
  'the package ships the compiled product only',
  { skip: built ? false : 'dist/ not built: npm run build:ts' },
  (t) => {
    const files = packedFiles();
    const compiled = files.filter((f) => f.startsWith('dist/'));
    t.ok(compiled.length > 0, `${compiled.length} compiled files packed`);
    t.same(
      compiled.filter((f) => !f.startsWith('dist/src/')),
      [],
      'nothing compiled from test/ ships',
    );
    // The executables' bundles (scripts/bundle.mjs) are built from dist/src and may carry their V8 code cache.
    const bundles = compiled.filter((f) => /\.bundle\.cjs(\.v8cache)?$/.test(f));
    t.same(
      bundles.filter((f) => f.endsWith('.cjs')).sort(),
      ['dist/src/cli/kmeshctl.bundle.cjs', 'dist/src/daemon/kmesh-daemon.bundle.cjs'],
      'the two executable bundles ship',
    );
    const orphans = compiled.filter((f) => {
      if (bundles.includes(f)) return false;
      const source = f.replace(/^dist\//, '').replace(/(\.d\.ts|\.js\.map|\.js)$/, '.ts');
      return !fs.existsSync(path.join(root, source));
    });
    t.same(orphans, [], 'every packed dist/src file is the output of a src/ module (rebuild when this fails)');
    t.same(
      files.filter((f) => /fake|scenario|mark-rules/.test(path.basename(f))),
      [],
      'no test double, oracle or scenario script ships',
    );
    const pkg = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8')) as { bin: Record<string, string> };
    for (const bin of Object.values(pkg.bin)) t.ok(files.includes(bin), `bin ${bin} ships`);
    for (const entry of ['dist/src/daemon/main.js', 'dist/src/cli/kmeshctl.js', 'dist/src/demo/main.js']) {
      t.ok(files.includes(entry), `${entry} ships`);
    }
    t.end();
  },
);
