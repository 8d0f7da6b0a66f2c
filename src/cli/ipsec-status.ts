// `kmeshctl ipsec status [-o text|json] [--wait]`: the cluster-wide view of who encrypts with what, from the
// KmeshNodeInfo objects and the Secret (src/secret/cluster-key-status.ts), in either store. With --wait it polls
// until the cluster has converged on the Secret's SPI (exit 0) or the --timeout has passed (exit 1, saying which
// nodes lag): what CI pipelines and operators run after `kmeshctl secret create`.
import type { Command } from 'commander';
import { Option } from 'commander';
import { clusterKeyStatusJson, formatClusterKeyStatus, type ClusterKeyStatus } from '../secret/cluster-key-status.js';
import { readClusterKeyStatus } from '../secret/commands.js';
import type { SecretStore } from '../secret/store.js';
import { MAX_DURATION_SECONDS } from '../util/duration-limit.js';

/** --wait without --timeout waits this long. */
export const DEFAULT_WAIT_SECONDS = 300;
/** Between two polls of --wait. */
const POLL_MS = 1000;

export interface IpsecCommandDeps {
  stdout: (text: string) => void;
  /** Opens the store; `requestTimeoutMs` caps each API request. */
  openStore: (requestTimeoutMs: number | undefined) => Promise<SecretStore>;
  /** The global --timeout as given (undefined when not given). */
  timeoutSeconds: () => string | undefined;
  /** Set the exit code (1 when --wait timed out). */
  setExitCode: (code: number) => void;
  /** Throws the CLI's usage error (exit 2). */
  usage: (message: string) => Error;
  sleep?: (ms: number) => Promise<void>;
  now?: () => number;
}

const HELP = `
Examples:
  kmeshctl ipsec status                       # per node: SPI advertised, held, sent with, last rotation, peers known, failing
  kmeshctl ipsec status -o json | jq .verdict
  kmeshctl secret create && kmeshctl ipsec status --wait --timeout 300   # rotate, then wait until every node switched
  kmeshctl --store dir:/var/lib/kmesh ipsec status

The verdict is "converged on SPI N" once every node advertises the Secret's SPI N, sends only with it, knows
every other node as a peer (PEERS = nodes - 1), is ready and reports no key problem and no failing peer;
otherwise it says how many nodes lag and why, naming the first five (the text form lists every one above it).
Old SPIs still held are listed beside it: a node removes them once every peer reports it no longer sends with them.
With --wait: exit 0 once converged, exit 1 when --timeout seconds (default ${DEFAULT_WAIT_SECONDS}) passed first.
It polls every second (from the API server's watch cache, with the Kubernetes store) and confirms what it
prints with a read of the latest version.`;

export function addIpsecCommand(program: Command, deps: IpsecCommandDeps): void {
  const ipsec = program.command('ipsec').description('Cluster-wide IPsec state (read from the KmeshNodeInfo objects)');
  ipsec
    .command('status')
    .description('Show which node advertises, holds and sends with which SPI, and whether the cluster converged')
    .addOption(new Option('-o, --output <format>', 'output format').choices(['text', 'json']).default('text'))
    .option('--wait', 'wait until the cluster has converged on the Secret SPI (bounded by --timeout)')
    .addHelpText('after', HELP)
    .action(async (options: { output: 'text' | 'json'; wait?: boolean }) => {
      const format = (s: ClusterKeyStatus, location: string) =>
        options.output === 'json' ? clusterKeyStatusJson(s) : formatClusterKeyStatus(s, location);
      if (options.wait !== true) {
        const store = await deps.openStore(undefined);
        deps.stdout(format(await readClusterKeyStatus(store), store.location));
        return;
      }
      const given = deps.timeoutSeconds();
      const waitSeconds = given === undefined ? DEFAULT_WAIT_SECONDS : Number(given);
      if (!Number.isFinite(waitSeconds) || waitSeconds <= 0) {
        throw deps.usage(`--timeout must be a positive number of seconds, got "${given ?? ''}"`);
      }
      if (waitSeconds > MAX_DURATION_SECONDS) {
        throw deps.usage(`--timeout: ${given ?? ''} s is above the limit of ${MAX_DURATION_SECONDS} s (7 days)`);
      }
      const now = deps.now ?? Date.now;
      const sleep = deps.sleep ?? ((ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms)));
      const deadline = now() + waitSeconds * 1000;
      const store = await deps.openStore(Math.min(15_000, waitSeconds * 1000));
      // The polls read the KmeshNodeInfo objects as the API server caches them (no etcd read: at 5,000 nodes a
      // read of the latest version is ten pages of megabytes, every second); what is printed, converged or timed
      // out, is read again at the latest version, and converged only counts when that read says so too.
      for (;;) {
        const timedOut = now() >= deadline;
        if (timedOut || (await readClusterKeyStatus(store, 'cached')).converged) {
          const status = await readClusterKeyStatus(store, 'latest');
          if (status.converged) {
            deps.stdout(format(status, store.location));
            return;
          }
          if (timedOut) {
            deps.stdout(format(status, store.location));
            deps.setExitCode(1);
            throw new WaitTimeoutError(`still ${status.verdict} after ${waitSeconds} s (--timeout)`);
          }
        }
        await sleep(Math.max(0, Math.min(POLL_MS, deadline - now())));
      }
    });
}

/** --wait ran out of time: the message says which nodes lag. */
export class WaitTimeoutError extends Error {
  override readonly name = 'WaitTimeoutError';
}
