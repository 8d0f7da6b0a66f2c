// The image build context (deploy/Dockerfile, built from the repository root) stays small: .dockerignore keeps
// out dependencies, build outputs, VM kernels and caches, but keeps every file the Dockerfile's build stage
// needs. The walk applies .dockerignore's patterns the way Docker does for the forms used there (a name at the
// top level, or `*.ext`).
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const MAX_CONTEXT_BYTES = 30 * 1024 * 1024;

function patterns(): string[] {
  const file = path.join(root, '.dockerignore');
  if (!fs.existsSync(file)) return [];
  return fs
    .readFileSync(file, 'utf8')
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('#'));
}

function ignored(rel: string, pats: string[]): boolean {
  const top = rel.split('/')[0] ?? rel;
  return pats.some((p) =>
    p.startsWith('*.') ? !rel.includes('/') && rel.endsWith(p.slice(1)) : top === p.replace(/\/$/, ''),
  );
}

function contextSize(pats: string[]): { bytes: number; files: Set<string> } {
  const files = new Set<string>();
  let bytes = 0;
  const walk = (dir: string): void => {
    for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
      const abs = path.join(dir, entry.name);
      const rel = path.relative(root, abs);
      if (ignored(rel, pats)) continue;
      if (entry.isDirectory()) walk(abs);
      else if (entry.isFile()) {
        bytes += fs.statSync(abs).size;
        files.add(rel);
      }
    }
  };
  walk(root);
  return { bytes, files };
}

t.test('the docker build context excludes what the image build does not need', (t) => {
  const pats = patterns();
  for (const dir of ['node_modules', '.cache', '.git', 'dist', 'build']) {
    t.ok(ignored(dir, pats), `${dir} is not sent to the image build`);
  }
  const { bytes, files } = contextSize(pats);
  t.ok(bytes < MAX_CONTEXT_BYTES, `context is ${(bytes / 1024 / 1024).toFixed(1)} MiB (< 30 MiB)`);
  for (const needed of [
    'package.json',
    'package-lock.json',
    'binding.gyp',
    'start_kmesh.sh',
    'tsconfig.json',
    'tsconfig.build.json',
    'bpf/Makefile',
  ]) {
    t.ok(files.has(needed), `${needed} is in the context`);
  }
  for (const dir of ['src', 'native', 'bin']) {
    t.ok(
      [...files].some((f) => f.startsWith(`${dir}/`)),
      `${dir}/ is in the context`,
    );
  }
  t.end();
});
