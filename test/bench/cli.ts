// `npm run bench:cli`: how fast kmeshctl starts, side by side with kubectl, against a real kube-apiserver on
// loopback (test/fixtures/control-plane.ts: etcd + kube-apiserver, the project's CRD and RBAC applied).
//   secret get:    `kmeshctl secret get -o json`  vs  `kubectl get secret -o json -n kmesh-system kmesh-ipsec`
//   secret create: `kmeshctl secret create`       vs  `kubectl patch secret kmesh-ipsec --type=merge -p ...`
//                  (a rotation reads the Secret and the KmeshNodeInfo list and writes the Secret; the kubectl
//                  write is one read and one patch of the same Secret)
//   daemon:        `kmesh-daemon --store=kubernetes` from spawn until its status file says synced (every list
//                  answered and every watch open), compared with kmeshctl's `secret get`
// Every command runs as a fresh process, interleaved round by round (the order alternates), after warm-up rounds
// that fill both tools' caches (kubectl's discovery cache, kmeshctl's V8 code cache). Wall time is spawn to exit
// as this process sees it; peak RSS is the child's own maximum resident set size (ru_maxrss, through GNU time
// -f %M); for the daemon, VmHWM from /proc when it reports synced. Medians are printed; the last line sums up.
// CPU (user + system, GNU time's 10 ms steps) is averaged: it moves far less with other load than wall time.
// Prints figures only; nothing here asserts on time.
//
// Usage: node dist/test/bench/cli.js [--rounds N] [--warmup N] [--compare DIR]
//   --compare DIR   also run DIR/bin/kmeshctl.js and DIR/bin/kmesh-daemon.js (another built checkout, e.g. the
//                   commit before a change) in the same rounds, so before and after come from one session
import { spawn, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { repoRootDir } from '../fixtures/control-plane-binaries.js';
import { ControlPlane } from '../fixtures/control-plane.js';
import { applyManifests, createNode } from '../fixtures/kube-cluster.js';

const say = (s: string): void => void process.stdout.write(`${s}\n`);
const TIME = '/usr/bin/time';
const NODE_NAME = 'bench-node';

interface Sample {
  wallS: number;
  rssMiB: number;
  /** User + system CPU of the process (GNU time, 10 ms steps: compare means over many rounds); NaN for the daemon. */
  cpuS: number;
}

interface Options {
  rounds: number;
  warmup: number;
  compare: string | undefined;
}

function parseArgs(argv: readonly string[]): Options {
  const value = (flag: string): string | undefined => {
    const i = argv.indexOf(flag);
    return i === -1 ? undefined : argv[i + 1];
  };
  const count = (flag: string, fallback: number): number => {
    const text = value(flag);
    const n = text === undefined ? fallback : Number(text);
    if (!Number.isInteger(n) || n < 0) throw new Error(`${flag} needs a whole number, got "${String(text)}"`);
    return n;
  };
  const compare = value('--compare');
  return { rounds: Math.max(1, count('--rounds', 15)), warmup: count('--warmup', 2), compare };
}

function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? (s[mid] ?? NaN) : ((s[mid - 1] ?? NaN) + (s[mid] ?? NaN)) / 2;
}

/** Runs `command` as a child of GNU time; wall time from here, peak RSS as the kernel counted it for the child. */
async function measure(command: string, args: readonly string[], env: NodeJS.ProcessEnv, work: string) {
  const rssFile = path.join(work, `rss-${randomBytes(4).toString('hex')}`);
  const started = process.hrtime.bigint();
  const { code, stdout, stderr } = await new Promise<{ code: number | null; stdout: string; stderr: string }>(
    (resolve, reject) => {
      const child = spawn(TIME, ['-f', '%M %U %S', '-o', rssFile, command, ...args], { env });
      let out = '';
      let err = '';
      child.stdout.on('data', (d: Buffer) => (out += d.toString()));
      child.stderr.on('data', (d: Buffer) => (err += d.toString()));
      child.on('error', reject);
      child.on('close', (c) => resolve({ code: c, stdout: out, stderr: err }));
    },
  );
  const wallS = Number(process.hrtime.bigint() - started) / 1e9;
  const lines = (await fsp.readFile(rssFile, 'utf8')).trim().split('\n');
  await fsp.rm(rssFile, { force: true });
  if (code !== 0) throw new Error(`${command} ${args.join(' ')} exited ${String(code)}: ${stderr.trim()}`);
  const [kb, user, system] = (lines.at(-1) ?? '').split(' ').map(Number);
  if (!Number.isFinite(kb) || !Number.isFinite(user) || !Number.isFinite(system)) {
    throw new Error(`GNU time gave no peak RSS and CPU for ${command}: ${lines.join(' | ')}`);
  }
  return { sample: { wallS, rssMiB: (kb ?? NaN) / 1024, cpuS: (user ?? NaN) + (system ?? NaN) }, stdout };
}

/** kmesh-daemon from spawn to a status file that says synced; its VmHWM then; stopped with SIGTERM (by PID). */
async function daemonToSynced(bin: string, kubeconfig: string, env: NodeJS.ProcessEnv, work: string) {
  const dir = await fsp.mkdtemp(path.join(work, 'daemon-'));
  const statusFile = path.join(dir, 'status.json');
  const args = [
    bin,
    '--store=kubernetes',
    `--kubeconfig=${kubeconfig}`,
    `--node-name=${NODE_NAME}`,
    `--status-file=${statusFile}`,
    `--state-dir=${dir}`,
    '--log-level=warn',
  ];
  const started = process.hrtime.bigint();
  const child = spawn(args[0]!, args.slice(1), { env, stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const pid = child.pid;
  if (pid === undefined) throw new Error(`cannot start ${bin}`);
  try {
    for (;;) {
      if (child.exitCode !== null) throw new Error(`${bin} exited ${String(child.exitCode)}: ${stderr.trim()}`);
      const text = await fsp.readFile(statusFile, 'utf8').catch(() => '');
      if (text !== '' && (JSON.parse(text) as { synced?: boolean }).synced === true) break;
      if (Number(process.hrtime.bigint() - started) > 60e9) throw new Error(`${bin} not synced after 60 s`);
      await new Promise((r) => setTimeout(r, 2));
    }
    const wallS = Number(process.hrtime.bigint() - started) / 1e9;
    const status = await fsp.readFile(`/proc/${String(pid)}/status`, 'utf8');
    const kb = Number(/VmHWM:\s+(\d+) kB/.exec(status)?.[1] ?? NaN);
    return { wallS, rssMiB: kb / 1024, cpuS: NaN };
  } finally {
    child.kill('SIGTERM');
    await exited;
    await fsp.rm(dir, { recursive: true, force: true });
  }
}

interface Tool {
  label: string;
  run: () => Promise<Sample>;
}

function ipsecPatch(spi: number): string {
  const payload = JSON.stringify({
    spi,
    aeadKeyName: 'rfc4106(gcm(aes))',
    aeadKey: randomBytes(36).toString('base64'),
    length: 128,
  });
  return JSON.stringify({ data: { ipSec: Buffer.from(payload).toString('base64') } });
}

function version(command: string, args: string[], pattern: RegExp): string {
  try {
    const out = execFileSync(command, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    return pattern.exec(out)?.[1] ?? 'unknown';
  } catch {
    return 'unknown';
  }
}

async function bench(options: Options): Promise<void> {
  if (!fs.existsSync(TIME)) throw new Error(`${TIME} is missing: install Debian's "time" package`);
  const root = repoRootDir();
  const ours = { kmeshctl: path.join(root, 'bin', 'kmeshctl.js'), daemon: path.join(root, 'bin', 'kmesh-daemon.js') };
  const theirs =
    options.compare === undefined
      ? undefined
      : {
          kmeshctl: path.resolve(options.compare, 'bin', 'kmeshctl.js'),
          daemon: path.resolve(options.compare, 'bin', 'kmesh-daemon.js'),
        };
  const cp = await ControlPlane.start({ name: 'kmesh-bench-cli' });
  const work = await fsp.mkdtemp(path.join(os.tmpdir(), 'kmesh-bench-cli-'));
  try {
    await applyManifests(cp);
    await createNode(cp, NODE_NAME, '198.18.0.1', '10.244.1.0/24');
    const home = path.join(work, 'home');
    await fsp.mkdir(home);
    // A user's shell environment, reduced to what either tool reads (NODE_EXTRA_CA_CERTS when this machine sets it).
    const extraCa = process.env.NODE_EXTRA_CA_CERTS;
    const env = {
      PATH: process.env.PATH ?? '/usr/bin:/bin',
      HOME: home,
      KUBECONFIG: cp.kubeconfig,
      ...(extraCa === undefined ? {} : { NODE_EXTRA_CA_CERTS: extraCa }),
    };
    const node = process.execPath;
    // The executable itself, as a user runs it (its first line decides how Node starts).
    const kmeshctl =
      (bin: string, ...args: string[]) =>
      async () =>
        (await measure(bin, args, env, work)).sample;
    const kubectl =
      (...args: string[]) =>
      async () =>
        (await measure('kubectl', args, env, work)).sample;
    let patchSpi = 1000;
    const getTools: Tool[] = [
      { label: 'kmeshctl', run: kmeshctl(ours.kmeshctl, 'secret', 'get', '-o', 'json') },
      {
        label: 'kubectl',
        run: kubectl('get', 'secret', '-o', 'json', '-n', 'kmesh-system', 'kmesh-ipsec'),
      },
    ];
    const createTools: Tool[] = [
      { label: 'kmeshctl', run: kmeshctl(ours.kmeshctl, 'secret', 'create') },
      {
        label: 'kubectl',
        run: () =>
          kubectl(
            'patch',
            'secret',
            'kmesh-ipsec',
            '-n',
            'kmesh-system',
            '--type=merge',
            '-p',
            ipsecPatch((patchSpi += 1)),
          )(),
      },
    ];
    const daemonTools: Tool[] = [
      { label: 'kmesh-daemon', run: () => daemonToSynced(ours.daemon, cp.kubeconfig, env, work) },
    ];
    if (theirs) {
      getTools.push({ label: 'kmeshctl (compare)', run: kmeshctl(theirs.kmeshctl, 'secret', 'get', '-o', 'json') });
      createTools.push({ label: 'kmeshctl (compare)', run: kmeshctl(theirs.kmeshctl, 'secret', 'create') });
      daemonTools.push({
        label: 'kmesh-daemon (compare)',
        run: () => daemonToSynced(theirs.daemon, cp.kubeconfig, env, work),
      });
    }
    // The Secret has to exist before the first get and patch.
    await measure(node, [ours.kmeshctl, 'secret', 'create'], env, work);

    const groups = [
      { name: 'secret get', tools: getTools },
      { name: 'secret create', tools: createTools },
      { name: 'daemon start-to-synced', tools: daemonTools },
    ];
    const samples = new Map<Tool, Sample[]>();
    for (const group of groups) for (const tool of group.tools) samples.set(tool, []);
    const total = options.warmup + options.rounds;
    for (let round = 0; round < total; round++) {
      const warm = round < options.warmup;
      for (const group of groups) {
        const order = round % 2 === 0 ? group.tools : [...group.tools].reverse();
        for (const tool of order) {
          const sample = await tool.run();
          if (!warm) samples.get(tool)?.push(sample);
        }
      }
      process.stderr.write(`bench:cli: ${warm ? 'warm-up ' : ''}round ${String(round + 1)}/${String(total)}\n`);
    }

    const kubeVersion = cp.binaries.kubeVersion;
    const kubectlVersion = version('kubectl', ['version', '--client'], /Client Version: (\S+)/);
    say(
      `bench:cli: kube-apiserver v${kubeVersion} on ${cp.server}, kubectl ${kubectlVersion}, node ${process.version}, ` +
        `${os.cpus().length} CPUs, load ${os
          .loadavg()
          .map((l) => l.toFixed(1))
          .join(' ')}; ${String(options.rounds)} rounds after ${String(options.warmup)} warm-up, interleaved`,
    );
    say(
      'wall: spawn to exit (daemon: to synced); peak RSS: ru_maxrss by GNU time (daemon: VmHWM at synced); ' +
        'CPU: user + system by GNU time, mean over the rounds',
    );
    const stats = (tool: Tool) => {
      const xs = samples.get(tool) ?? [];
      const walls = xs.map((s) => s.wallS);
      return {
        wall: median(walls),
        min: Math.min(...walls),
        max: Math.max(...walls),
        rss: median(xs.map((s) => s.rssMiB)),
        cpu: xs.reduce((sum, s) => sum + s.cpuS, 0) / xs.length,
      };
    };
    // Each round's two runs share that moment's load: the median of the per-round ratios drifts less than the
    // ratio of the medians when other work comes and goes (printed beside it; the last line keeps the latter).
    const pairedRatio = (tool: Tool, reference: Tool | undefined): string => {
      const xs = samples.get(tool) ?? [];
      const ys = reference === undefined || reference === tool ? [] : (samples.get(reference) ?? []);
      if (ys.length === 0) return '';
      return `, per-round ratio to ${reference?.label ?? ''} ${median(xs.map((x, i) => x.wallS / (ys[i]?.wallS ?? NaN))).toFixed(2)}x`;
    };
    for (const group of groups) {
      const reference = group.tools.find((tool) => tool.label === 'kubectl');
      for (const tool of group.tools) {
        const s = stats(tool);
        say(
          `  ${group.name.padEnd(23)} ${tool.label.padEnd(22)} median ${s.wall.toFixed(3)} s ` +
            `(${s.min.toFixed(3)}..${s.max.toFixed(3)}), peak RSS ${s.rss.toFixed(1)} MiB` +
            `${Number.isNaN(s.cpu) ? '' : `, CPU mean ${(s.cpu * 1000).toFixed(0)} ms`}${pairedRatio(tool, reference)}`,
        );
      }
    }
    const pair = (group: (typeof groups)[number]) => {
      const [a, b] = group.tools.map(stats);
      if (a === undefined || b === undefined) return '';
      return (
        `${group.name}: kmeshctl ${a.wall.toFixed(3)} s / kubectl ${b.wall.toFixed(3)} s = ` +
        `${(a.wall / b.wall).toFixed(2)}x wall; peak RSS ${a.rss.toFixed(0)} / ${b.rss.toFixed(0)} MiB = ` +
        `${(a.rss / b.rss).toFixed(2)}x; CPU ${(a.cpu / b.cpu).toFixed(2)}x`
      );
    };
    const [getGroup, createGroup, daemonGroup] = groups;
    const daemon = daemonGroup?.tools[0];
    const get = getGroup?.tools[0];
    if (getGroup === undefined || createGroup === undefined || daemon === undefined || get === undefined) return;
    const d = stats(daemon);
    const g = stats(get);
    say(
      `${pair(getGroup)} | ${pair(createGroup)} | daemon start-to-synced ${d.wall.toFixed(3)} s = ` +
        `${(d.wall / g.wall).toFixed(2)}x kmeshctl secret get`,
    );
  } finally {
    await cp.stop();
    await fsp.rm(work, { recursive: true, force: true });
  }
}

bench(parseArgs(process.argv.slice(2))).catch((err: unknown) => {
  say(`bench:cli failed: ${(err as Error).message}`);
  process.exitCode = 1;
});
