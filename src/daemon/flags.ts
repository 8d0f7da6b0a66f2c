// Command line of kmesh-daemon: parses argv (plus NODE_NAME from the environment) into a DaemonConfig or a
// one-line error naming the offending flag. Pure apart from commander's own output, which is captured.
import fs from 'node:fs';
import path from 'node:path';
import { Command, CommanderError, Option } from 'commander';
import {
  DEFAULT_BPF_FS_PATH,
  DEFAULT_MIN_STEP_GAP_MS,
  DEFAULT_RESYNC_SECONDS,
  MAX_MIN_STEP_GAP_MS,
  DEFAULT_ROTATION_ACK_TIMEOUT_SECONDS,
  DEFAULT_ROTATION_GRACE_SECONDS,
  DEFAULT_STATE_DIR,
  RETIREMENT_RULES,
  type DaemonConfig,
  type DaemonMode,
  type ListenAddress,
  type LogLevel,
  type StoreConfig,
} from './config.js';
import { DEFAULT_IPSEC_KEY_FILE, dirStoreKeyFile } from '../model/kmesh-names.js';
import { parseStoreLocation } from '../model/store-location.js';
import { MAX_DURATION_SECONDS } from '../util/duration-limit.js';
import type { RetirementRule } from '../ipsec/rotation.js';
import { MAX_IPSEC_MTU, MIN_IPSEC_MTU } from '../model/esp-overhead.js';
import type { IpsecMtuSetting } from './mss-clamp.js';
import { DEFAULT_PEER_METRICS_LIMIT, MAX_PEER_METRICS_LIMIT } from './peer-series-limit.js';
import { STRICT_MODES, type StrictMode } from '../model/strict-mode.js';

export type FlagsResult =
  | { kind: 'config'; config: DaemonConfig }
  /** --help / --version / --check-flags: print `text` to stdout and exit 0. */
  | { kind: 'info'; text: string }
  | { kind: 'error'; message: string };

class FlagError extends Error {}

const MODES: readonly DaemonMode[] = ['dual-engine', 'kernel-native'];
const LOG_LEVELS: readonly LogLevel[] = ['trace', 'debug', 'info', 'warn', 'error', 'fatal'];

/** Go-style boolean flag value (`--enable-ipsec`, `--enable-ipsec=true`, `=false`, `=1`, `=0`). */
function parseBool(flag: string): (value: string | undefined) => boolean {
  return (value) => {
    if (value === undefined) return true;
    const v = value.trim().toLowerCase();
    if (v === 'true' || v === '1' || v === 't') return true;
    if (v === 'false' || v === '0' || v === 'f') return false;
    throw new FlagError(`--${flag}: expected true or false, got ${JSON.stringify(value)}`);
  };
}

export function parseStore(value: string): StoreConfig {
  try {
    return parseStoreLocation(value);
  } catch (err) {
    throw new FlagError((err as Error).message);
  }
}

/** `HOST:PORT`, `:PORT` (all addresses) or `[v6]:PORT`; empty = no listener. */
export function parseListenAddress(value: string): ListenAddress | undefined {
  if (value === '') return undefined;
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]]*)):(\d{1,5})$/.exec(value);
  const port = m ? Number(m[3]) : NaN;
  if (!m || port < 1 || port > 65535) {
    throw new FlagError(`--metrics-addr: expected HOST:PORT (port 1-65535), got ${JSON.stringify(value)}`);
  }
  const host = m[1] ?? m[2] ?? '';
  return { host: host === '' ? '0.0.0.0' : host, port };
}

function durationSeconds(flag: string): (value: string) => number {
  return (value) => {
    if (!/^\d+$/.test(value.trim())) {
      throw new FlagError(`--${flag}: expected a whole number of seconds, got ${JSON.stringify(value)}`);
    }
    const seconds = Number(value.trim());
    if (seconds > MAX_DURATION_SECONDS) {
      throw new FlagError(`--${flag}: ${seconds} s is above the limit of ${MAX_DURATION_SECONDS} s (7 days)`);
    }
    return seconds;
  };
}

/**
 * A parser of a whole number from 0 to `max` for --`flag`; `unit` names what it counts in its errors, and `suffix`
 * follows a number in them (" ms").
 */
function wholeNumber(flag: string, unit: string, max: number, suffix = ''): (value: string) => number {
  return (value) => {
    const v = value.trim();
    if (!/^\d+$/.test(v))
      throw new FlagError(`--${flag}: expected a whole number of ${unit}, got ${JSON.stringify(value)}`);
    const n = Number(v);
    if (n > max) throw new FlagError(`--${flag}: ${n}${suffix} is above the limit of ${max}${suffix}`);
    return n;
  };
}

/** --min-step-gap: a whole number of milliseconds within 0..MAX_MIN_STEP_GAP_MS. */
const parseMinStepGap = wholeNumber('min-step-gap', 'milliseconds', MAX_MIN_STEP_GAP_MS, ' ms');
/** --peer-metrics-limit: a whole number of peers within 0..MAX_PEER_METRICS_LIMIT. */
const parsePeerMetricsLimit = wholeNumber('peer-metrics-limit', 'peers', MAX_PEER_METRICS_LIMIT);

function oneOf<T extends string>(flag: string, allowed: readonly T[]): (value: string) => T {
  return (value) => {
    const hit = allowed.find((a) => a === value);
    if (hit === undefined) {
      throw new FlagError(`--${flag}: expected one of ${allowed.join(', ')}, got ${JSON.stringify(value)}`);
    }
    return hit;
  };
}

/** --ipsec-mtu: `auto` or a whole number of bytes within MIN_IPSEC_MTU..MAX_IPSEC_MTU. */
export function parseIpsecMtu(value: string): IpsecMtuSetting {
  const v = value.trim();
  if (v === 'auto') return 'auto';
  const n = /^\d+$/.test(v) ? Number(v) : NaN;
  if (!(n >= MIN_IPSEC_MTU && n <= MAX_IPSEC_MTU)) {
    throw new FlagError(
      `--ipsec-mtu: expected auto or a number of bytes from ${MIN_IPSEC_MTU} to ${MAX_IPSEC_MTU}, got ${JSON.stringify(value)}`,
    );
  }
  return n;
}

function nonEmpty(flag: string): (value: string) => string {
  return (value) => {
    if (value.trim() === '') throw new FlagError(`--${flag}: must not be empty`);
    return value;
  };
}

interface RawOptions {
  mode: DaemonMode;
  enableBypass: boolean;
  enableIpsec: boolean;
  ipsecKeyFile?: string;
  store: StoreConfig;
  nodeName?: string;
  kubeconfig?: string;
  bpfFsPath: string;
  allowPrivateBpffs: boolean;
  metricsAddr?: ListenAddress;
  statusFile?: string;
  stateDir: string;
  rotationGrace: number;
  rotationRetirement: RetirementRule;
  rotationAckTimeout: number;
  resyncInterval: number;
  minStepGap: number;
  peerMetricsLimit: number;
  ipsecMtu: IpsecMtuSetting;
  ipsecMssClamp: boolean;
  ipsecStrict: StrictMode;
  logLevel: LogLevel;
  checkFlags?: boolean;
}

function buildProgram(out: { text: string }): Command {
  const program = new Command('kmesh-daemon');
  program
    .description(
      "Kmesh IPsec node daemon: publishes this node's KmeshNodeInfo, watches its peers and the managed pods, " +
        'installs XFRM states/policies and the TC mark programs.',
    )
    .version('0.1.0', '--version')
    .argument('[command]', '"uninstall" removes everything this node owns; omit to run the daemon')
    .addOption(
      new Option('--mode <mode>', 'Kmesh dataplane mode').default('dual-engine').argParser(oneOf('mode', MODES)),
    )
    .addOption(
      new Option('--enable-bypass [bool]', 'Kmesh bypass (not supported here: must stay false)')
        .default(false)
        .argParser(parseBool('enable-bypass')),
    )
    .addOption(
      new Option('--enable-ipsec [bool]', 'encrypt traffic between Kmesh nodes with IPsec')
        .default(false)
        .argParser(parseBool('enable-ipsec')),
    )
    .addOption(
      new Option(
        '--ipsec-key-file <path>',
        `the kmesh-ipsec secret file (default ${DEFAULT_IPSEC_KEY_FILE}; with --store dir:PATH: PATH/kmesh-ipsec/ipSec)`,
      ).argParser(nonEmpty('ipsec-key-file')),
    )
    .addOption(
      new Option('--store <store>', 'where cluster objects live: kubernetes or dir:PATH')
        .default({ kind: 'kubernetes' }, 'kubernetes')
        .argParser(parseStore),
    )
    .addOption(
      new Option('--node-name <name>', "this node's name (default $NODE_NAME)").argParser(nonEmpty('node-name')),
    )
    .addOption(new Option('--kubeconfig <path>', 'kubeconfig for --store kubernetes').argParser(nonEmpty('kubeconfig')))
    .addOption(
      new Option('--bpf-fs-path <path>', "bpffs directory for this node's pins")
        .default(DEFAULT_BPF_FS_PATH)
        .argParser(nonEmpty('bpf-fs-path')),
    )
    .addOption(
      new Option(
        '--allow-private-bpffs [bool]',
        'run even if the bpffs at --bpf-fs-path is private to this mount namespace (pins die with it)',
      )
        .default(false)
        .argParser(parseBool('allow-private-bpffs')),
    )
    .addOption(
      new Option(
        '--metrics-addr <host:port>',
        'serve Prometheus /metrics, JSON /status and the readiness verdict /readyz here (empty = off)',
      ).argParser(parseListenAddress),
    )
    .addOption(new Option('--status-file <path>', 'rewrite this file with the JSON status after every step'))
    .addOption(
      new Option('--state-dir <path>', 'state kept across restarts (key history)')
        .default(DEFAULT_STATE_DIR)
        .argParser(nonEmpty('state-dir')),
    )
    .addOption(
      new Option('--rotation-grace <seconds>', 'keep old-SPI SAs this long after every peer moved on')
        .default(DEFAULT_ROTATION_GRACE_SECONDS)
        .argParser(durationSeconds('rotation-grace')),
    )
    .addOption(
      new Option(
        '--rotation-retirement <rule>',
        'acknowledged: remove an old SPI once every peer reports it no longer sends with it; timer: the grace alone',
      )
        .default('acknowledged')
        .argParser(oneOf('rotation-retirement', RETIREMENT_RULES)),
    )
    .addOption(
      new Option(
        '--rotation-ack-timeout <seconds>',
        'longest wait for a peer that still reports sending with an old SPI (a dead node not yet removed)',
      )
        .default(DEFAULT_ROTATION_ACK_TIMEOUT_SECONDS)
        .argParser(durationSeconds('rotation-ack-timeout')),
    )
    .addOption(
      new Option('--resync-interval <seconds>', 'full reconcile at least this often')
        .default(DEFAULT_RESYNC_SECONDS)
        .argParser(durationSeconds('resync-interval')),
    )
    .addOption(
      new Option(
        '--min-step-gap <ms>',
        'least time from the end of one reconcile step to the start of the next: a change after a quiet spell is applied at once, a burst of changes (a rotation) in steps at most this often; 0 = back to back',
      )
        .default(DEFAULT_MIN_STEP_GAP_MS)
        .argParser(parseMinStepGap),
    )
    .addOption(
      new Option(
        '--peer-metrics-limit <n>',
        'kmesh_ipsec_peer_* series for every peer while there are at most n peers, else only for failing peers (at most n); peers are counted by SPI either way; 0 = none',
      )
        .default(DEFAULT_PEER_METRICS_LIMIT)
        .argParser(parsePeerMetricsLimit),
    )
    .addOption(
      new Option(
        '--ipsec-mtu <bytes|auto>',
        `underlay MTU the TCP MSS clamp is computed for (${MIN_IPSEC_MTU}-${MAX_IPSEC_MTU}); auto = the smallest MTU of the interfaces holding the node's InternalIPs`,
      )
        .default('auto')
        .argParser(parseIpsecMtu),
    )
    .addOption(
      new Option(
        '--ipsec-mss-clamp [bool]',
        'lower the MSS of TCP SYN / SYN-ACK to encrypted peers so full segments fit the MTU with ESP',
      )
        .default(true)
        .argParser(parseBool('ipsec-mss-clamp')),
    )
    .addOption(
      new Option(
        '--ipsec-strict <mode>',
        "plaintext from a peer's pod CIDR to a managed local pod: off, audit (count) or enforce (drop); counted in every mode",
      )
        .default('off')
        .argParser(oneOf('ipsec-strict', STRICT_MODES)),
    )
    .addOption(new Option('--log-level <level>', 'log level').default('info').argParser(oneOf('log-level', LOG_LEVELS)))
    .addOption(new Option('--check-flags', 'only check the flags (exit 0, or 2 with the reason) and do nothing'))
    .helpOption('-h, --help', 'show this help')
    .allowExcessArguments(false)
    .exitOverride()
    .configureOutput({
      writeOut: (s) => (out.text += s),
      writeErr: (s) => (out.text += s),
      outputError: () => undefined,
    });
  return program;
}

/** Parses kmesh-daemon's arguments (without `node` and the script path). */
export function parseDaemonFlags(argv: readonly string[], env: NodeJS.ProcessEnv = {}): FlagsResult {
  const out = { text: '' };
  const program = buildProgram(out);
  try {
    program.parse([...argv], { from: 'user' });
  } catch (err) {
    if (err instanceof CommanderError) {
      if (err.code === 'commander.helpDisplayed' || err.code === 'commander.version') {
        return { kind: 'info', text: out.text };
      }
      return { kind: 'error', message: err.message.replace(/^error: /, '') };
    }
    if (err instanceof FlagError) return { kind: 'error', message: err.message };
    throw err;
  }
  try {
    const config = resolve(program, env);
    if (program.opts<RawOptions>().checkFlags === true) return { kind: 'info', text: '' };
    return { kind: 'config', config };
  } catch (err) {
    if (err instanceof FlagError) return { kind: 'error', message: err.message };
    throw err;
  }
}

function resolve(program: Command, env: NodeJS.ProcessEnv): DaemonConfig {
  const o = program.opts<RawOptions>();
  const given = (name: string): boolean => program.getOptionValueSource(name) === 'cli';
  const [commandArg] = program.args;
  if (commandArg !== undefined && commandArg !== 'uninstall') {
    throw new FlagError(`unknown command ${JSON.stringify(commandArg)} (the only command is "uninstall")`);
  }
  const nodeName = o.nodeName ?? env.NODE_NAME ?? '';
  if (nodeName.trim() === '') throw new FlagError('--node-name: not given and NODE_NAME is not set');
  if (!/^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/.test(nodeName) || nodeName.length > 253) {
    throw new FlagError(`--node-name: ${JSON.stringify(nodeName)} is not a valid Kubernetes node name`);
  }
  if (o.enableBypass) {
    throw new FlagError('--enable-bypass=true: bypass is not part of this daemon; pass --enable-bypass=false');
  }
  if (o.store.kind === 'dir' && o.kubeconfig !== undefined) {
    throw new FlagError('--kubeconfig: only meaningful with --store kubernetes, but --store is dir:');
  }
  // uninstall needs no key: it accepts the run flags as they are (e.g. the DaemonSet's) without complaint.
  if (!o.enableIpsec && given('ipsecKeyFile') && commandArg !== 'uninstall') {
    throw new FlagError('--ipsec-key-file: given without --enable-ipsec=true');
  }
  if (o.enableIpsec && o.mode !== 'dual-engine') {
    throw new FlagError(`--enable-ipsec=true: requires --mode=dual-engine (got --mode=${o.mode})`);
  }
  if (!o.ipsecMssClamp && given('ipsecMtu')) {
    throw new FlagError('--ipsec-mtu: given with --ipsec-mss-clamp=false, which turns the clamp it sets off');
  }
  if (o.resyncInterval < 1) throw new FlagError('--resync-interval: must be at least 1 second');
  if (o.rotationGrace < o.resyncInterval) {
    throw new FlagError(
      `--rotation-grace: ${o.rotationGrace} s is below --resync-interval (${o.resyncInterval} s); a peer that ` +
        'missed a watch event switches only at its next resync, so old SAs must outlive it',
    );
  }
  // Not given: at least the grace period (a long --rotation-grace raises it).
  const ackTimeout = given('rotationAckTimeout')
    ? o.rotationAckTimeout
    : Math.max(o.rotationAckTimeout, o.rotationGrace);
  if (ackTimeout < o.rotationGrace) {
    throw new FlagError(
      `--rotation-ack-timeout: ${ackTimeout} s is below --rotation-grace (${o.rotationGrace} s); ` +
        'waiting for a lagging peer must last at least as long as the grace period',
    );
  }
  if (o.store.kind === 'dir' && !isDirectory(o.store.root)) {
    throw new FlagError(
      `--store: directory ${o.store.root} does not exist (create it, or fix the path: kmeshctl --store uses the same)`,
    );
  }
  const ipsecKeyFile = path.resolve(
    o.ipsecKeyFile ?? (o.store.kind === 'dir' ? dirStoreKeyFile(o.store.root) : DEFAULT_IPSEC_KEY_FILE),
  );
  return {
    command: commandArg === 'uninstall' ? 'uninstall' : 'run',
    mode: o.mode,
    enableBypass: o.enableBypass,
    enableIpsec: o.enableIpsec,
    ipsecKeyFile,
    store: o.store,
    nodeName,
    kubeconfig: o.kubeconfig,
    bpfFsPath: path.resolve(o.bpfFsPath),
    allowPrivateBpffs: o.allowPrivateBpffs,
    // commander keeps '' when the parser maps it to undefined: both mean "no listener".
    metricsAddr: typeof o.metricsAddr === 'object' ? o.metricsAddr : undefined,
    statusFile: o.statusFile === undefined || o.statusFile === '' ? undefined : path.resolve(o.statusFile),
    stateDir: path.resolve(o.stateDir),
    rotationGraceSeconds: o.rotationGrace,
    rotationRetirement: o.rotationRetirement,
    rotationAckTimeoutSeconds: ackTimeout,
    resyncSeconds: o.resyncInterval,
    minStepGapMs: o.minStepGap,
    peerMetricsLimit: o.peerMetricsLimit,
    mssClamp: { enabled: o.ipsecMssClamp, mtu: o.ipsecMtu },
    strictMode: o.ipsecStrict,
    logLevel: o.logLevel,
  };
}

function isDirectory(dir: string): boolean {
  try {
    return fs.statSync(dir).isDirectory();
  } catch {
    return false;
  }
}
