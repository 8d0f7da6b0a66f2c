import t from 'tap';
import { parseDaemonFlags } from '../../src/daemon/flags.js';

const env = { NODE_NAME: 'node-a' };

function config(argv: string[], e: NodeJS.ProcessEnv = env) {
  const r = parseDaemonFlags(argv, e);
  if (r.kind !== 'config') throw new Error(`expected a config, got ${JSON.stringify(r)}`);
  return r.config;
}

function error(argv: string[], e: NodeJS.ProcessEnv = env): string {
  const r = parseDaemonFlags(argv, e);
  if (r.kind !== 'error') throw new Error(`expected an error, got ${JSON.stringify(r)}`);
  return r.message;
}

t.test('the user guide command line', (t) => {
  const c = config(['--mode=dual-engine', '--enable-bypass=false', '--enable-ipsec=true']);
  t.equal(c.command, 'run');
  t.equal(c.mode, 'dual-engine');
  t.equal(c.enableIpsec, true);
  t.equal(c.enableBypass, false);
  t.equal(c.ipsecKeyFile, '/kmesh/kmesh-ipsec/ipSec');
  t.same(c.store, { kind: 'kubernetes' });
  t.equal(c.nodeName, 'node-a');
  t.equal(c.bpfFsPath, '/sys/fs/bpf');
  t.equal(c.metricsAddr, undefined);
  t.end();
});

t.test('defaults: IPsec off, kubernetes store, NODE_NAME', (t) => {
  const c = config([]);
  t.equal(c.enableIpsec, false);
  t.equal(c.kubeconfig, undefined);
  t.equal(c.rotationGraceSeconds, 60);
  t.end();
});

t.test('boolean flags accept Go forms', (t) => {
  t.equal(config(['--enable-ipsec']).enableIpsec, true);
  t.equal(config(['--enable-ipsec=1']).enableIpsec, true);
  t.equal(config(['--enable-ipsec=FALSE']).enableIpsec, false);
  t.equal(config(['--enable-ipsec', 'true']).enableIpsec, true);
  t.match(error(['--enable-ipsec=yes']), /^--enable-ipsec: expected true or false, got "yes"$/);
  t.end();
});

t.test('directory store: key file defaults into the store', (t) => {
  const kstore = t.testdir();
  const c = config(['--store', `dir:${kstore}/`, '--enable-ipsec=true']);
  t.same(c.store, { kind: 'dir', root: kstore });
  t.equal(c.ipsecKeyFile, `${kstore}/kmesh-ipsec/ipSec`);
  const explicit = config([`--store=dir:${kstore}`, '--enable-ipsec', '--ipsec-key-file=/x/ipSec']);
  t.equal(explicit.ipsecKeyFile, '/x/ipSec');
  t.end();
});

t.test('every other flag', (t) => {
  const c = config([
    '--node-name=n1',
    '--kubeconfig=/k/config',
    '--bpf-fs-path=/sys/fs/bpf/n1',
    '--metrics-addr=127.0.0.1:15020',
    '--status-file=/tmp/s.json',
    '--state-dir=/tmp/state',
    '--rotation-grace=9',
    '--resync-interval=7',
    '--log-level=debug',
  ]);
  t.equal(c.nodeName, 'n1');
  t.equal(c.kubeconfig, '/k/config');
  t.equal(c.bpfFsPath, '/sys/fs/bpf/n1');
  t.same(c.metricsAddr, { host: '127.0.0.1', port: 15020 });
  t.equal(c.statusFile, '/tmp/s.json');
  t.equal(c.stateDir, '/tmp/state');
  t.equal(c.rotationGraceSeconds, 9);
  t.equal(c.resyncSeconds, 7);
  t.equal(c.logLevel, 'debug');
  t.equal(c.rotationRetirement, 'acknowledged', "old SPIs go on every peer's acknowledgement by default");
  t.equal(c.rotationAckTimeoutSeconds, 3600);
  const timer = config(['--rotation-retirement=timer', '--rotation-ack-timeout=120']);
  t.equal(timer.rotationRetirement, 'timer');
  t.equal(timer.rotationAckTimeoutSeconds, 120);
  t.match(error(['--rotation-retirement=never']), /^--rotation-retirement: expected one of acknowledged, timer/);
  t.match(error(['--rotation-ack-timeout=30']), /^--rotation-ack-timeout: 30 s is below --rotation-grace \(60 s\)/);
  t.equal(
    config(['--resync-interval=7200', '--rotation-grace=7200']).rotationAckTimeoutSeconds,
    7200,
    'not given: raised to the grace period',
  );
  t.equal(c.minStepGapMs, 250, 'a burst is taken in steps at most every 250 ms by default');
  t.equal(config(['--min-step-gap=250']).minStepGapMs, 250);
  t.equal(config(['--min-step-gap=0']).minStepGapMs, 0, '0: steps back to back');
  t.equal(config(['--min-step-gap=10000']).minStepGapMs, 10000);
  t.match(error(['--min-step-gap=10001']), /^--min-step-gap: 10001 ms is above the limit of 10000 ms$/);
  t.match(error(['--min-step-gap=0.5']), /^--min-step-gap: expected a whole number of milliseconds, got "0\.5"$/);
  t.equal(config([]).peerMetricsLimit, 100, 'per-peer series for every peer up to 100 peers by default');
  t.equal(config(['--peer-metrics-limit=0']).peerMetricsLimit, 0, '0: none');
  t.equal(config(['--peer-metrics-limit', '5000']).peerMetricsLimit, 5000);
  t.match(error(['--peer-metrics-limit=100001']), /^--peer-metrics-limit: 100001 is above the limit of 100000$/);
  t.match(error(['--peer-metrics-limit=-1']), /^--peer-metrics-limit: expected a whole number of peers, got "-1"$/);
  t.match(error(['--min-step-gap=-1']), /^--min-step-gap: /);
  t.same(config(['--metrics-addr=:9090']).metricsAddr, { host: '0.0.0.0', port: 9090 });
  t.same(config(['--metrics-addr=[::1]:9090']).metricsAddr, { host: '::1', port: 9090 });
  t.equal(config(['--metrics-addr=']).metricsAddr, undefined);
  t.end();
});

t.test('uninstall command', (t) => {
  t.equal(config(['uninstall']).command, 'uninstall');
  t.equal(config(['uninstall', `--store=dir:${t.testdir()}`]).command, 'uninstall');
  t.equal(config(['uninstall', '--ipsec-key-file=/k/ipSec']).command, 'uninstall', 'uninstall accepts the run flags');
  t.match(error(['remove']), /unknown command "remove"/);
  t.end();
});

t.test('bad and contradictory flags name the flag', (t) => {
  t.equal(error(['--frobnicate']), "unknown option '--frobnicate'");
  t.match(error(['--mode=turbo']), /^--mode: expected one of dual-engine, kernel-native, got "turbo"$/);
  t.match(error(['--store=etcd']), /^--store: expected "kubernetes" or "dir:PATH"/);
  t.match(error(['--store=dir:']), /^--store: dir: needs a path/);
  t.match(error(['--metrics-addr=15020']), /^--metrics-addr: expected HOST:PORT/);
  t.match(error(['--metrics-addr=:70000']), /^--metrics-addr:/);
  t.match(error(['--rotation-grace=-1']), /^--rotation-grace: expected a whole number/);
  t.match(error(['--resync-interval=0']), /^--resync-interval: must be at least 1 second$/);
  t.match(error(['--log-level=loud']), /^--log-level: expected one of/);
  t.match(error(['--enable-bypass=true']), /^--enable-bypass=true: bypass is not part of this daemon/);
  t.match(error(['--store=dir:/s', '--kubeconfig=/k']), /^--kubeconfig: only meaningful with --store kubernetes/);
  t.match(error(['--ipsec-key-file=/k']), /^--ipsec-key-file: given without --enable-ipsec=true$/);
  t.match(error(['--enable-ipsec', '--mode=kernel-native']), /^--enable-ipsec=true: requires --mode=dual-engine/);
  t.match(error(['--node-name=']), /^--node-name: must not be empty$/);
  t.match(error([], {}), /^--node-name: not given and NODE_NAME is not set$/);
  t.match(error(['--node-name=Bad_Name']), /^--node-name: "Bad_Name" is not a valid Kubernetes node name$/);
  t.end();
});

t.test('--help and --version print and succeed', (t) => {
  const help = parseDaemonFlags(['--help'], env);
  t.equal(help.kind, 'info');
  if (help.kind === 'info') {
    for (const flag of [
      '--mode',
      '--enable-bypass',
      '--enable-ipsec',
      '--ipsec-key-file',
      '--store',
      '--node-name',
      '--kubeconfig',
      '--bpf-fs-path',
      '--metrics-addr',
    ]) {
      t.match(help.text, flag);
    }
  }
  const version = parseDaemonFlags(['--version'], env);
  t.same(version, { kind: 'info', text: '0.1.0\n' });
  t.end();
});

t.test('durations are bounded: no timer overflow, no grace shorter than a resync', (t) => {
  // Node fires timers above 2^31-1 ms at once: 3,000,000 s would make the daemon reconcile in a busy loop.
  t.match(error(['--resync-interval=3000000']), /^--resync-interval: 3000000 s is above the limit of 604800 s/);
  t.match(error(['--rotation-grace=2147484']), /^--rotation-grace: 2147484 s is above the limit/);
  t.equal(config(['--resync-interval=604800', '--rotation-grace=604800']).resyncSeconds, 604800);
  t.match(error(['--rotation-grace=0']), /^--rotation-grace: 0 s is below --resync-interval \(30 s\)/);
  t.match(error(['--rotation-grace=20', '--resync-interval=30']), /^--rotation-grace: 20 s is below/);
  t.equal(config(['--rotation-grace=30', '--resync-interval=30']).rotationGraceSeconds, 30);
  t.end();
});

t.test('a directory store that does not exist is refused, not created', (t) => {
  const missing = `${t.testdir()}/no-such-store`;
  t.equal(
    error([`--store=dir:${missing}`]),
    `--store: directory ${missing} does not exist (create it, or fix the path: kmeshctl --store uses the same)`,
  );
  t.end();
});

t.test('--check-flags validates and does nothing else', (t) => {
  t.same(parseDaemonFlags(['--check-flags', '--enable-ipsec=true'], env), { kind: 'info', text: '' });
  const bad = parseDaemonFlags(['--check-flags', '--mode=turbo'], env);
  t.equal(bad.kind, 'error');
  t.end();
});

t.test('--ipsec-mtu and --ipsec-mss-clamp', (t) => {
  t.same(config([]).mssClamp, { enabled: true, mtu: 'auto' }, 'default: clamp, MTU from the underlay');
  t.same(config(['--ipsec-mtu=1400']).mssClamp, { enabled: true, mtu: 1400 });
  t.same(config(['--ipsec-mtu', 'auto']).mssClamp, { enabled: true, mtu: 'auto' });
  t.same(config(['--ipsec-mss-clamp=false']).mssClamp, { enabled: false, mtu: 'auto' });
  for (const bad of ['1279', '65536', 'big', '1500.5', '']) {
    const r = parseDaemonFlags([`--ipsec-mtu=${bad}`], env);
    t.same(
      r,
      {
        kind: 'error',
        message: `--ipsec-mtu: expected auto or a number of bytes from 1280 to 65535, got ${JSON.stringify(bad)}`,
      },
      `refuses ${JSON.stringify(bad)}`,
    );
  }
  t.match(parseDaemonFlags(['--ipsec-mss-clamp=maybe'], env), {
    kind: 'error',
    message: /--ipsec-mss-clamp: expected true or false/,
  });
  t.match(parseDaemonFlags(['--ipsec-mss-clamp=false', '--ipsec-mtu=1400'], env), {
    kind: 'error',
    message: '--ipsec-mtu: given with --ipsec-mss-clamp=false, which turns the clamp it sets off',
  });
  t.end();
});

t.test('--ipsec-strict', (t) => {
  t.equal(config([]).strictMode, 'off', 'default off');
  t.equal(config(['--ipsec-strict=audit']).strictMode, 'audit');
  t.equal(config(['--ipsec-strict', 'enforce']).strictMode, 'enforce');
  t.same(parseDaemonFlags(['--ipsec-strict=on'], env), {
    kind: 'error',
    message: '--ipsec-strict: expected one of off, audit, enforce, got "on"',
  });
  t.end();
});
