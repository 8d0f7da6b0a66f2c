// The daemon runs with the heap settings of bin/heap-settings.js however the product starts it: through
// start_kmesh.sh (the DaemonSet and the image run it) and as bin/kmesh-daemon.js. A preload (NODE_OPTIONS
// --require, which the launcher's first line passes on) records node's command-line flags and every
// v8.setFlagsFromString call the daemon makes.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import t, { type Test } from 'tap';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const built = fs.existsSync(path.join(root, 'dist', 'src', 'daemon', 'kmesh-daemon.bundle.cjs'));
const settings = createRequire(import.meta.url)(path.join(root, 'bin', 'heap-settings.js')) as {
  LAUNCH_ENV: Readonly<Record<string, string>>;
  LAUNCH_FLAGS: readonly string[];
  RUNTIME_FLAGS: readonly string[];
};

const PRELOAD = `
const fs = require('node:fs');
const v8 = require('node:v8');
const set = v8.setFlagsFromString;
const runtime = [];
v8.setFlagsFromString = (flag) => { runtime.push(flag); return set(flag); };
const env = Object.fromEntries(Object.keys(JSON.parse(process.env.HEAP_SETTINGS_ENV)).map((k) => [k, process.env[k]]));
process.on('exit', () => fs.writeFileSync(process.env.HEAP_SETTINGS_OUT, JSON.stringify({ execArgv: process.execArgv, runtime, env })));
`;

interface Seen {
  execArgv: string[];
  runtime: string[];
  env: Record<string, string | undefined>;
}

function started(t: Test, argv: string[]): Seen {
  const dir = t.testdir({ 'preload.cjs': PRELOAD });
  const out = path.join(dir, 'out.json');
  const r = spawnSync(argv[0]!, argv.slice(1), {
    encoding: 'utf8',
    env: {
      ...process.env,
      NODE_OPTIONS: `--require=${path.join(dir, 'preload.cjs')}`,
      HEAP_SETTINGS_OUT: out,
      HEAP_SETTINGS_ENV: JSON.stringify(settings.LAUNCH_ENV),
      // Set otherwise by whoever starts the daemon: the launcher's own value wins.
      ...Object.fromEntries(Object.keys(settings.LAUNCH_ENV).map((k) => [k, '8'])),
    },
  });
  t.equal(r.status, 0, `${argv.join(' ')} exits 0 (${r.stderr.trim()})`);
  return JSON.parse(fs.readFileSync(out, 'utf8')) as Seen;
}

t.test('the settings are what the launcher gives node', { skip: built ? false : 'dist/ not built' }, (t) => {
  t.ok(settings.LAUNCH_FLAGS.includes('--max-semi-space-size=4'), 'semi-space flag at launch');
  t.same(
    settings.LAUNCH_ENV,
    { MALLOC_ARENA_MAX: '2', MALLOC_MMAP_THRESHOLD_: '131072' },
    'two malloc arenas and a fixed mmap threshold, set at launch',
  );
  t.ok(settings.RUNTIME_FLAGS.includes('--heap-growing-percent=15'), 'heap growth flag at run time');
  const first = fs.readFileSync(path.join(root, 'bin', 'kmesh-daemon.js'), 'utf8').split('\n')[0]!;
  t.ok(Buffer.byteLength(first) <= 127, 'the first line fits what kernels before 5.1 read of it (127 bytes)');
  for (const argv of [
    [path.join(root, 'start_kmesh.sh'), '--version'],
    [path.join(root, 'bin', 'kmesh-daemon.js'), '--version'],
  ]) {
    const seen = started(t, argv);
    t.same(seen.execArgv, settings.LAUNCH_FLAGS, `${path.basename(argv[0]!)}: node's flags are LAUNCH_FLAGS`);
    t.same(seen.env, settings.LAUNCH_ENV, `${path.basename(argv[0]!)}: the process environment holds LAUNCH_ENV`);
    t.same(
      seen.runtime,
      settings.RUNTIME_FLAGS,
      `${path.basename(argv[0]!)}: RUNTIME_FLAGS set before the daemon runs`,
    );
  }
  t.end();
});
