// The shipped bin/kmesh-daemon.js (and start_kmesh.sh) as processes, as root: `uninstall` with the Kubernetes
// store and no kubeconfig still cleans the node, claims only what was there, creates no missing --bpf-fs-path
// and keeps JSON logs off its stdout summary; under `ip netns exec` (a fresh /sys, where start_kmesh.sh mounts
// a bpffs only that mount namespace sees) the daemon refuses to start unless --allow-private-bpffs=true, and
// uninstall says the pins are not visible there. XFRM work happens only in network namespaces made here.
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { addNetns, delNetns, kernelSkipReason, REPO_ROOT } from './lib/kernel.js';

const daemon = path.join(REPO_ROOT, 'bin', 'kmesh-daemon.js');
const startScript = path.join(REPO_ROOT, 'start_kmesh.sh');
const built = fs.existsSync(path.join(REPO_ROOT, 'dist', 'src', 'daemon', 'kmesh-daemon.bundle.cjs'));
const skip = kernelSkipReason() || (!built && 'dist/ not built: npm run build') || false;
const netns = `kmt-dp-uninst-${process.pid}`;
const env = (home: string) => ({ PATH: process.env.PATH, HOME: home });

/** A private bpffs needs `ip netns exec`'s remount of /sys: the netns is ours, named kmt-dp-*. */
function inNetnsExec(argv: string[], home: string) {
  return spawnSync('ip', ['netns', 'exec', netns, ...argv], { encoding: 'utf8', env: env(home), timeout: 60_000 });
}

t.test('daemon processes', { skip }, (t) => {
  addNetns(netns);
  t.teardown(() => delNetns(netns));

  t.test('uninstall, Kubernetes store, no kubeconfig: the node is cleaned, stdout is the summary alone', (t) => {
    const dir = t.testdir({ home: {}, state: { 'keys.json': '{"keys":[]}' } });
    const bpfFsPath = path.join(dir, 'missing-bpffs');
    const r = spawnSync(
      'unshare',
      [
        '--net',
        process.execPath,
        daemon,
        'uninstall',
        '--node-name=node-1',
        `--bpf-fs-path=${bpfFsPath}`,
        `--state-dir=${path.join(dir, 'state')}`,
      ],
      { encoding: 'utf8', env: env(path.join(dir, 'home')), timeout: 60_000 },
    );
    t.equal(r.status, 1, 'exit 1: the KmeshNodeInfo could not be deleted');
    t.equal(r.stdout, 'removed: saved key history\n', 'only what was there; no JSON log line on stdout');
    t.match(r.stderr, /^kmesh-daemon uninstall: KmeshNodeInfo: .+$/m, 'the unreachable cluster in one line');
    t.notOk(fs.existsSync(path.join(dir, 'state', 'keys.json')), 'the key history is gone');
    t.notOk(fs.existsSync(bpfFsPath), 'the missing --bpf-fs-path was not created');
    t.end();
  });

  t.test('under ip netns exec the daemon refuses the private bpffs start_kmesh.sh mounted', (t) => {
    const dir = t.testdir({ home: {}, store: {}, state: {} });
    const args = [
      startScript,
      `--store=dir:${path.join(dir, 'store')}`,
      '--enable-ipsec=true',
      '--node-name=node-1',
      `--state-dir=${path.join(dir, 'state')}`,
    ];
    const r = inNetnsExec(args, path.join(dir, 'home'));
    t.equal(r.status, 1);
    t.match(r.stderr, /start_kmesh\.sh: mounting bpffs at \/sys\/fs\/bpf\n/, 'the private mount was made');
    t.match(
      r.stderr,
      /^kmesh-daemon: --bpf-fs-path \/sys\/fs\/bpf is on a bpffs \(mounted at \/sys\/fs\/bpf\) private to this mount namespace, .*"ip netns exec".*, or pass --allow-private-bpffs=true to accept that$/m,
    );
    const uninstall = inNetnsExec(
      [
        'sh',
        '-c',
        'mount -t bpf bpf /sys/fs/bpf && exec "$0" "$@"',
        process.execPath,
        daemon,
        'uninstall',
        '--node-name=node-1',
        `--store=dir:${path.join(dir, 'store')}`,
        `--state-dir=${path.join(dir, 'state')}`,
      ],
      path.join(dir, 'home'),
    );
    t.equal(uninstall.status, 1, 'uninstall cannot see the pins of a daemon that ran elsewhere: a problem');
    t.match(
      uninstall.stderr,
      /^kmesh-daemon uninstall: datapath: --bpf-fs-path \/sys\/fs\/bpf is on a bpffs .* private/m,
    );
    t.equal(uninstall.stdout, 'removed: nothing\n');
    t.end();
  });

  t.test('--allow-private-bpffs=true runs anyway and warns at startup', async (t) => {
    const dir = t.testdir({ home: {}, store: {}, state: {} });
    const child = spawn(
      'ip',
      [
        'netns',
        'exec',
        netns,
        startScript,
        `--store=dir:${path.join(dir, 'store')}`,
        '--enable-ipsec=true',
        '--node-name=node-1',
        `--state-dir=${path.join(dir, 'state')}`,
        '--allow-private-bpffs=true',
      ],
      { env: env(path.join(dir, 'home')), stdio: ['ignore', 'pipe', 'pipe'] },
    );
    t.teardown(() => child.kill('SIGKILL'));
    let stdout = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    const warned = await new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => resolve(false), 30_000);
      child.stdout.on('data', () => {
        if (/"level":40.*--allow-private-bpffs/.test(stdout) && /kmesh-daemon starting/.test(stdout)) {
          clearTimeout(timer);
          resolve(true);
        }
      });
    });
    t.ok(warned, 'a warning naming the private bpffs, then the daemon starts');
    child.kill('SIGTERM');
    const code = await new Promise<number | null>((resolve) => child.once('close', resolve));
    t.equal(code, 0, 'stops cleanly on SIGTERM');
  });
  t.end();
});
