// kmesh-daemon entry point (imperative shell): parses flags, wires the source, the key-file watcher, the
// IPsec and datapath adapters and the reconcile loop, serves status/metrics, and handles signals. SIGTERM
// stops watching and leaves the datapath and XFRM state in place (a restart adopts them without a gap);
// `kmesh-daemon uninstall` removes everything this node owns.
import type http from 'node:http';
import { pino, type Logger } from 'pino';
import { decodeIpsecPayload } from '../secret/payload.js';
import { parseNodeInfo } from '../ipsec/validate-peer.js';
import type { DaemonConfig } from './config.js';
import { parseDaemonFlags } from './flags.js';
import { readHostNetwork } from './host-network.js';
import { KeyFileWatcher } from './key-file-watcher.js';
import { loadKeyState, removeKeyState, saveKeyState } from './key-store.js';
import { ReconcileLoop } from './loop.js';
import { DaemonMetrics } from './metrics.js';
import { createDatapathPort, createIpsecPort } from './wiring.js';
import { DirSource } from './sources/dir-source.js';
import type { ClusterSource } from './sources/source.js';
import { startStatusServer, writeStatusFile } from './status-server.js';
import { readXfrmStat } from './xfrm-stat.js';
import { privateBpffsMessage, readBpffsScope } from './bpffs-scope.js';
import { formatUninstall, runUninstall } from './uninstall.js';
import { firstLine } from '../util/first-line.js';

export interface MainIo {
  stdout: (text: string) => void;
  stderr: (text: string) => void;
  /** Resolves when the daemon should stop (default: SIGTERM or SIGINT). */
  stopSignal?: Promise<string>;
}

const defaultIo: MainIo = {
  stdout: (t) => process.stdout.write(t),
  stderr: (t) => process.stderr.write(t),
};

/** JSON logs on stdout; `uninstall` logs to stderr, so that its stdout holds only the human summary. */
function makeLogger(config: DaemonConfig): Logger {
  const options = {
    level: config.logLevel,
    base: { node: config.nodeName },
    // Belt and braces: no key material ever reaches a log line, even by accident.
    redact: { paths: ['key', '*.key', 'aeadKey', '*.aeadKey', 'psk', '*.psk'], censor: '[redacted]' },
  };
  return config.command === 'uninstall' ? pino(options, pino.destination({ dest: 2, sync: true })) : pino(options);
}

/** The Kubernetes client is imported only for --store kubernetes (it takes a while to load, more so in a VM). */
async function makeSource(config: DaemonConfig, log: Logger): Promise<ClusterSource> {
  if (config.store.kind === 'dir') return new DirSource(config.store.root, config.nodeName);
  const { loadKubeConfig } = await import('../kube/client.js');
  const { KubeSource } = await import('./sources/kube-source.js');
  const loaded = loadKubeConfig({ kubeconfig: config.kubeconfig });
  log.info({ kubeconfig: loaded.source, server: loaded.server }, 'using the Kubernetes API');
  return new KubeSource(loaded.config, config.nodeName, {
    onError: (message) => log.warn({}, `watch: ${message}`),
  });
}

function signalPromise(): Promise<string> {
  return new Promise((resolve) => {
    const on = (sig: string) => () => resolve(sig);
    process.once('SIGTERM', on('SIGTERM'));
    process.once('SIGINT', on('SIGINT'));
  });
}

export async function main(argv: readonly string[], io: MainIo = defaultIo, env = process.env): Promise<number> {
  const parsed = parseDaemonFlags(argv, env);
  if (parsed.kind === 'info') {
    io.stdout(parsed.text);
    return 0;
  }
  if (parsed.kind === 'error') {
    io.stderr(`kmesh-daemon: ${parsed.message}\n`);
    return 2;
  }
  const config = parsed.config;
  const log = makeLogger(config);
  if (config.command === 'uninstall') return uninstall(config, log, io);
  let source: ClusterSource;
  try {
    source = await makeSource(config, log);
  } catch (err) {
    io.stderr(`kmesh-daemon: ${(err as Error).message}\n`);
    return 1;
  }
  try {
    return await run(config, source, log, io.stopSignal ?? signalPromise());
  } catch (err) {
    log.fatal({ err: (err as Error).message }, 'kmesh-daemon failed');
    io.stderr(`kmesh-daemon: ${firstLine(err)}\n`);
    return 1;
  }
}

/**
 * Refuses a bpffs private to our mount namespace (pins there die with it: the datapath would not survive a
 * stop), or warns when --allow-private-bpffs accepts that. Returns the refusal, if any.
 */
async function checkBpffs(config: DaemonConfig, log: Logger): Promise<string | undefined> {
  const scope = await readBpffsScope(config.bpfFsPath);
  if (scope.kind === 'unknown') log.debug({ reason: scope.reason }, 'cannot tell whether the bpffs is shared');
  if (scope.kind !== 'private') return undefined;
  const message = privateBpffsMessage(config.bpfFsPath, scope.mountPoint);
  if (!config.allowPrivateBpffs) return `${message}, or pass --allow-private-bpffs=true to accept that`;
  log.warn({ bpfFsPath: config.bpfFsPath, mountPoint: scope.mountPoint }, `${message} (--allow-private-bpffs)`);
  return undefined;
}

async function run(config: DaemonConfig, source: ClusterSource, log: Logger, stop: Promise<string>): Promise<number> {
  if (config.enableIpsec) {
    const refusal = await checkBpffs(config, log);
    if (refusal !== undefined) throw new Error(refusal);
  }
  const metrics = new DaemonMetrics({ peerSeriesLimit: config.peerMetricsLimit });
  const ipsec = config.enableIpsec ? await createIpsecPort(config) : undefined;
  const datapath = config.enableIpsec ? createDatapathPort(config, (msg, fields) => log.warn(fields, msg)) : undefined;
  if (ipsec) {
    try {
      const saved = await loadKeyState(config.stateDir);
      if (saved !== undefined) {
        ipsec.importKeys(saved);
        log.info({ spis: ipsec.keySpis() }, 'key history restored');
      }
    } catch (err) {
      log.warn({ err: (err as Error).message }, 'key history unreadable; starting from the secret file only');
    }
  }
  let lastStatusError = '';
  const loop: ReconcileLoop = new ReconcileLoop({
    nodeName: config.nodeName,
    source,
    ipsec,
    datapath,
    keyFile: undefined,
    parseNodeInfo,
    hostNetwork: readHostNetwork,
    xfrmStat: () => readXfrmStat(),
    log,
    metrics,
    onStatus: async (status) => {
      if (config.statusFile === undefined) return;
      try {
        await writeStatusFile(config.statusFile, status);
        lastStatusError = '';
      } catch (err) {
        const msg = (err as Error).message;
        if (msg !== lastStatusError) log.warn({ file: config.statusFile }, `cannot write status file: ${msg}`);
        lastStatusError = msg;
      }
    },
    saveKeys: (saved) => saveKeyState(config.stateDir, saved),
    resyncMs: config.resyncSeconds * 1000,
    minStepGapMs: config.minStepGapMs,
    mssClamp: config.mssClamp,
    strictMode: config.strictMode,
  });
  let watcher: KeyFileWatcher | undefined;
  if (ipsec) {
    watcher = new KeyFileWatcher(config.ipsecKeyFile, decodeIpsecPayload, (event) => loop.keyEvent(event));
    loop.setKeyFile(watcher);
  }
  log.info(
    {
      mode: config.mode,
      ipsec: config.enableIpsec,
      store: source.description,
      keyFile: config.enableIpsec ? config.ipsecKeyFile : null,
      bpfFsPath: config.bpfFsPath,
    },
    'kmesh-daemon starting',
  );
  let server: http.Server | undefined;
  if (config.metricsAddr) {
    server = await startStatusServer(config.metricsAddr, metrics, () => loop.currentStatus());
    log.info({ addr: `${config.metricsAddr.host}:${config.metricsAddr.port}` }, 'serving /metrics and /status');
  }
  await watcher?.start();
  await source.start(() => loop.trigger('cluster change'));
  loop.start();
  const signal = await stop;
  log.info({ signal }, 'stopping; datapath and XFRM state stay in place');
  watcher?.stop();
  await loop.stop();
  await source.stop();
  await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
  return 0;
}

async function uninstall(config: DaemonConfig, log: Logger, io: MainIo): Promise<number> {
  const report = await runUninstall({
    bpfFsPath: config.bpfFsPath,
    nodeName: config.nodeName,
    bpffsScope: () => readBpffsScope(config.bpfFsPath),
    datapath: () => createDatapathPort(config).uninstall(),
    xfrm: async () => (await createIpsecPort(config)).uninstall(),
    nodeInfo: async () => (await makeSource(config, log)).deleteNodeInfo(),
    keyState: () => removeKeyState(config.stateDir),
  });
  log.info(report, 'uninstall finished');
  const text = formatUninstall(report);
  io.stdout(text.stdout);
  io.stderr(text.stderr);
  return report.problems.length === 0 ? 0 : 1;
}
