// The installed entry point bin/kmeshctl.js as a real process (the bundle and its V8 code cache): exit codes, one-line
// errors with no stack trace, and concurrent creates from separate processes (API server and dir store). Builds
// dist/ and the bundle when they are stale.
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { decodeIpsecPayload } from '../../src/secret/payload.js';
import { secretPayload, startCluster, TOKEN } from '../fixtures/kmeshctl-harness.js';
import { kubeconfigDocument } from '../fixtures/kubeconfig.js';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const BIN = path.join(REPO, 'bin', 'kmeshctl.js');
const BUILT = path.join(REPO, 'dist', 'src', 'cli', 'kmeshctl.bundle.cjs');

function newestSource(): number {
  let newest = 0;
  for (const dir of ['src/cli', 'src/secret', 'src/kube', 'src/model']) {
    const full = path.join(REPO, dir);
    if (!fs.existsSync(full)) continue;
    for (const name of fs.readdirSync(full)) newest = Math.max(newest, fs.statSync(path.join(full, name)).mtimeMs);
  }
  return newest;
}

if (!fs.existsSync(BUILT) || fs.statSync(BUILT).mtimeMs < newestSource()) {
  // tsc emits even when another part of the tree has type errors; what matters is that our output is fresh.
  spawnSync('npx', ['tsc', '-p', 'tsconfig.build.json'], { cwd: REPO, stdio: 'ignore' });
  spawnSync(process.execPath, ['scripts/bundle.mjs'], { cwd: REPO, stdio: 'ignore' });
}
const built = fs.existsSync(BUILT) && fs.statSync(BUILT).mtimeMs >= newestSource();

interface ProcessResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

function runProcess(args: string[], env: NodeJS.ProcessEnv = {}): Promise<ProcessResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], { env: { PATH: process.env.PATH, ...env } });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

const NO_STACK = /^\s+at |Error:|node:internal/m;

t.test('bin/kmeshctl.js as a process', { skip: !built && 'could not build dist/ (npm run build:ts)' }, async (t) => {
  const { api, kubeconfig, dir } = await startCluster(t);
  const home = { HOME: path.join(dir, 'home') };

  t.test('create succeeds with exit 0', async (t) => {
    t.same(await runProcess(['--kubeconfig', kubeconfig, 'secret', 'create'], home), {
      code: 0,
      stdout: 'IPsec secret created (SPI 1)\n',
      stderr: '',
    });
  });

  t.test('the V8 code cache is written by a run without one, used, and replaced when V8 refuses it', async (t) => {
    const cache = `${BUILT}.v8cache`;
    const get = () => runProcess(['--kubeconfig', kubeconfig, 'secret', 'get', '-o', 'json'], home);
    fs.rmSync(cache, { force: true });
    const first = await get();
    t.equal(first.code, 0);
    t.equal((JSON.parse(first.stdout) as { spi: number }).spi, 1);
    t.ok(fs.existsSync(cache), 'the run wrote the cache');
    const written = fs.readFileSync(cache);
    t.same(await get(), first, 'same result with the cache');
    t.same(fs.readFileSync(cache), written, 'an accepted cache is left alone');
    fs.writeFileSync(cache, 'not a V8 code cache');
    t.same(await get(), first, 'same result with a cache V8 refuses');
    t.not(fs.readFileSync(cache).toString(), 'not a V8 code cache', 'the refused cache was replaced');
  });

  t.test('an exec credential plugin in the kubeconfig supplies the token', async (t) => {
    const plugin = path.join(dir, 'credential-plugin.cjs');
    const status = { token: TOKEN, expirationTimestamp: new Date(Date.now() + 3_600_000).toISOString() };
    const credential = { apiVersion: 'client.authentication.k8s.io/v1', kind: 'ExecCredential', status };
    fs.writeFileSync(plugin, `process.stdout.write(${JSON.stringify(JSON.stringify(credential))});\n`);
    const document = kubeconfigDocument({ server: api.url, token: 'unused', caData: api.caPem });
    document.users = [
      {
        name: 'fake-user',
        user: {
          exec: {
            apiVersion: 'client.authentication.k8s.io/v1',
            command: process.execPath,
            args: [plugin],
            interactiveMode: 'Never',
          },
        },
      },
    ];
    const execConfig = path.join(dir, 'kubeconfig-exec');
    fs.writeFileSync(execConfig, JSON.stringify(document));
    const result = await runProcess(['--kubeconfig', execConfig, 'secret', 'get', '-o', 'json'], home);
    t.equal(result.stderr, '');
    t.equal(result.code, 0);
    t.equal((JSON.parse(result.stdout) as { name: string }).name, 'kmesh-ipsec');
  });

  t.test('errors are one line, no stack trace, with the right exit code', async (t) => {
    const [badKey, usage, noConfig] = await Promise.all([
      runProcess(['--kubeconfig', kubeconfig, 'secret', 'create', '--key', 'xyz'], home),
      runProcess(['secret', 'frobnicate'], home),
      runProcess(['secret', 'get'], home),
    ]);
    t.equal(badKey.code, 2);
    t.equal(badKey.stderr.split('\n').length, 2, 'one line');
    t.notMatch(badKey.stderr, NO_STACK);
    t.equal(usage.code, 2);
    t.notMatch(usage.stderr, NO_STACK);
    t.equal(noConfig.code, 1);
    t.match(noConfig.stderr, /^error: no Kubernetes configuration found: .*\n$/);
  });

  t.test('three processes creating at once get three distinct SPIs', async (t) => {
    const results = await Promise.all(
      [1, 2, 3].map(() => runProcess(['--kubeconfig', kubeconfig, 'secret', 'create'], home)),
    );
    t.same(
      results.map((r) => r.code),
      [0, 0, 0],
    );
    const spis = results.map((r) => Number(/SPI \d+ -> (\d+)\)/.exec(r.stdout)?.[1])).sort();
    t.same(spis, [2, 3, 4]);
    t.equal(decodeIpsecPayload(secretPayload(api) ?? '').spi, 4);
  });

  t.test('three processes creating at once in a dir store get three distinct SPIs', async (t) => {
    const root = t.testdir();
    const results = await Promise.all([1, 2, 3].map(() => runProcess(['--store', `dir:${root}`, 'secret', 'create'])));
    t.same(
      results.map((r) => r.code),
      [0, 0, 0],
    );
    const spis = results.map((r) => Number(/SPI (?:\d+ -> )?(\d+)\)/.exec(r.stdout)?.[1])).sort();
    t.same(spis, [1, 2, 3]);
    t.equal(decodeIpsecPayload(fs.readFileSync(path.join(root, 'kmesh-ipsec', 'ipSec'))).spi, 3);
  });

  t.test('API server down: exit 1, one line, no stack trace', async (t) => {
    await api.stop();
    const down = await runProcess(['--kubeconfig', kubeconfig, 'secret', 'create'], home);
    t.equal(down.code, 1);
    t.match(
      down.stderr,
      /^error: cannot read Secret kmesh-system\/kmesh-ipsec: connection to the API server at https:\/\/127\.0\.0\.1:\d+ refused; .*\n$/,
    );
    t.notMatch(down.stderr, NO_STACK);
  });
});
