// kmeshctl: the command-line shell around the secret commands. Parses flags (commander), picks the store
// (Kubernetes API or a local directory), runs create/get/delete and turns every failure into one line on stderr
// and an exit code: 0 success, 1 the operation failed, 2 the command line or the key was wrong.
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { Command, CommanderError, Option } from 'commander';
import { packageRoot } from '../native/addon.js';
import { createOrRotateSecret, deleteSecret, readSecret, SameKeyError } from '../secret/commands.js';
import type { CreateOutcome } from '../secret/commands.js';
import { InvalidKeyError, KEY_BYTES, parseHexKey } from '../secret/key-hex.js';
import { DirSecretStore } from '../secret/store-dir.js';
import { KMESH_NAMESPACE } from '../model/kmesh-names.js';
import { parseStoreLocation, type StoreLocation } from '../model/store-location.js';
import type { SecretStore } from '../secret/store.js';
import { formatSecretJson, formatSecretText, secretView } from '../secret/view.js';
import { MAX_DURATION_SECONDS } from '../util/duration-limit.js';
import { shellWord } from '../util/shell-word.js';
import { addIpsecCommand } from './ipsec-status.js';

/** Where the CLI reads its environment and writes its output (tests pass their own). */
export interface CliIo {
  stdout: (text: string) => void;
  stderr: (text: string) => void;
  env: NodeJS.ProcessEnv;
  /** Root for the in-cluster service account lookup (default `/`). */
  inClusterRoot?: string;
}

export const EXIT_OK = 0;
export const EXIT_FAILED = 1;
export const EXIT_USAGE = 2;

/** A command-line mistake (exit 2). */
class UsageError extends Error {
  override readonly name = 'UsageError';
}

interface GlobalOptions {
  kubeconfig?: string;
  context?: string;
  namespace?: string;
  store?: string;
  timeout?: string;
}

function parseStore(value: string | undefined): StoreLocation {
  try {
    return parseStoreLocation(value ?? 'kubernetes');
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
}

/** --timeout in ms; bounded as the daemon's duration flags are (Node's timers overflow past 2^31-1 ms). */
function parseTimeout(value: string | undefined): number {
  if (value === undefined) return 15_000;
  const seconds = Number(value);
  if (value.trim() === '' || !Number.isFinite(seconds) || seconds <= 0) {
    throw new UsageError(`--timeout must be a positive number of seconds, got "${value}"`);
  }
  if (seconds > MAX_DURATION_SECONDS) {
    throw new UsageError(`--timeout: ${value} s is above the limit of ${MAX_DURATION_SECONDS} s (7 days)`);
  }
  return Math.max(1, Math.round(seconds * 1000));
}

/** The kmeshctl command line that reaches the same store, for recovery hints (`kmeshctl --store dir:/x`). */
function kmeshctlCommand(options: GlobalOptions): string {
  const words = ['kmeshctl'];
  const choice = parseStore(options.store);
  if (choice.kind === 'dir') words.push('--store', `dir:${choice.root}`);
  if (options.kubeconfig !== undefined) words.push('--kubeconfig', options.kubeconfig);
  if (options.context !== undefined) words.push('--context', options.context);
  if (options.namespace !== undefined) words.push('-n', options.namespace);
  return words.map(shellWord).join(' ');
}

/** The package's version (package.json beside src/ or dist/). */
function packageVersion(): string {
  try {
    const manifest = JSON.parse(fs.readFileSync(path.join(packageRoot(), 'package.json'), 'utf8')) as {
      version?: unknown;
    };
    return typeof manifest.version === 'string' ? manifest.version : 'unknown';
  } catch {
    return 'unknown';
  }
}

/** Opens the chosen store. The Kubernetes client is loaded only when needed (it takes a second to import). */
async function openStore(options: GlobalOptions, io: CliIo): Promise<SecretStore> {
  const choice = parseStore(options.store);
  const timeoutMs = parseTimeout(options.timeout);
  if (choice.kind === 'dir') {
    const kubeOnly = (['kubeconfig', 'context', 'namespace'] as const).filter((k) => options[k] !== undefined);
    if (kubeOnly.length > 0) {
      throw new UsageError(
        `--${kubeOnly.join(', --')} only apply to --store kubernetes; the dir store has a fixed layout under ${choice.root}`,
      );
    }
    return new DirSecretStore({ root: choice.root, lockTimeoutMs: timeoutMs });
  }
  const namespace = options.namespace ?? KMESH_NAMESPACE;
  if (!/^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/.test(namespace)) {
    throw new UsageError(`--namespace "${namespace}" is not a valid Kubernetes namespace name`);
  }
  const { loadKubeConfig } = await import('../kube/client.js');
  const { KubernetesSecretStore } = await import('../secret/store-kubernetes.js');
  const loaded = loadKubeConfig({
    kubeconfig: options.kubeconfig,
    context: options.context,
    env: io.env,
    inClusterRoot: io.inClusterRoot,
  });
  return new KubernetesSecretStore({ config: loaded.config, server: loaded.server, namespace, timeoutMs });
}

/** `-k=HEX` (the cobra spelling Kmesh documents) reaches us as "=HEX": drop that '='. */
function keyArgument(value: string | undefined): Buffer {
  if (value === undefined) return randomBytes(KEY_BYTES);
  try {
    return parseHexKey(value.startsWith('=') ? value.slice(1) : value);
  } catch (err) {
    if (err instanceof InvalidKeyError) throw new UsageError(`invalid --key: ${err.message}; nothing was changed`);
    throw err;
  }
}

/**
 * The documented recipe `--key=$(... | xxd -p)` is unquoted, so a key that xxd wrapped arrives as several words:
 * hex-only words after --key are the rest of the key. Anything else is a mistake (not echoed: it may be key material).
 */
function joinKeyParts(key: string | undefined, extra: readonly string[]): string | undefined {
  if (extra.length === 0) return key;
  if (key === undefined) throw new UsageError(`unexpected argument "${extra[0] ?? ''}": "secret create" takes none`);
  if (!extra.every((word) => /^[0-9a-fA-F]+$/.test(word))) {
    throw new UsageError('unexpected argument after --key that is not hex: quote the key if it contains spaces');
  }
  return [key, ...extra].join('\n');
}

function describeOutcome(outcome: CreateOutcome): string {
  if (outcome.kind === 'rotated') return `IPsec key rotated (SPI ${outcome.previousSpi} -> ${outcome.spi})`;
  return outcome.replacedMalformed
    ? `IPsec secret created (SPI ${outcome.spi}), replacing a malformed one`
    : `IPsec secret created (SPI ${outcome.spi})`;
}

const GLOBAL_HELP = `
Examples:
  kmeshctl secret create                         # create the IPsec key, or rotate it (SPI + 1)
  kmeshctl secret get -o json | jq .spi
  kmeshctl --store dir:/var/lib/kmesh secret create
  kmeshctl help secret create                    # help of one command (same as: secret create --help)

Stores:
  --store kubernetes   (default) the Secret kmesh-system/kmesh-ipsec via the Kubernetes API; the kubeconfig is
                       --kubeconfig, else $KUBECONFIG, else ~/.kube/config, else the in-cluster service account
  --store dir:PATH     no cluster: the payload lives in PATH/kmesh-ipsec/ipSec (the file the daemon reads) and
                       node SPIs are read from PATH/kmeshnodeinfos/*.json

Exit codes: 0 success, 1 the operation failed, 2 bad command line or key, 3 done but its output was lost.`;

const SECRET_HELP = `
Examples:
  kmeshctl secret create                         # random 36-byte key; SPI 1, or a rotation to SPI+1
  kmeshctl secret create --key=$(echo -n "{36-character user-defined key here}" | xxd -p -c 64)
  kmeshctl secret create -k "$(head -c 36 /dev/urandom | xxd -p -c 64)"
  kmeshctl secret get                            # key in hex, SPI, name, namespace, creation time
  kmeshctl secret get -o json | jq .spi
  kmeshctl secret delete
  kmeshctl --store dir:/var/lib/kmesh secret create
  kmeshctl secret --key=HEX                      # older form, same as: secret create --key=HEX

The key is 36 bytes as 72 hex digits (32-byte AES-256 key + 4-byte salt, rfc4106(gcm(aes))); whitespace and
line breaks inside it are ignored. Every create on an existing secret rotates the key and raises the SPI by one.`;

const CREATE_HELP = `
Examples:
  kmeshctl secret create                         # random 36-byte key; SPI 1, or a rotation to SPI+1
  kmeshctl secret create --key=$(echo -n "{36-character user-defined key here}" | xxd -p -c 64)
  kmeshctl secret create -k "$(head -c 36 /dev/urandom | xxd -p -c 64)"
  kmeshctl --store dir:/var/lib/kmesh secret create

The key is 36 bytes as 72 hex digits (32-byte AES-256 key + 4-byte salt); whitespace inside it is ignored. Refused
(exit 2, nothing changed): the key already in force (the same key under a new SPI would repeat AES-GCM nonces) and
an AES key of all zeros.`;

const GET_HELP = `
Examples:
  kmeshctl secret get                            # name, namespace, creation time, the config with the key in hex
  kmeshctl secret get -o json | jq .spi
  kmeshctl --store dir:/var/lib/kmesh secret get`;

const DELETE_HELP = `
Examples:
  kmeshctl secret delete
  kmeshctl --store dir:/var/lib/kmesh secret delete

After a delete, the next create continues above every SPI a KmeshNodeInfo still advertises.`;

/** `get` and `delete` take no arguments (as `create` takes none but the words of a wrapped --key). */
function refuseArguments(subcommand: string, command: Command): void {
  const [extra] = command.args;
  if (extra !== undefined) throw new UsageError(`unexpected argument "${extra}": "secret ${subcommand}" takes none`);
}

function buildProgram(io: CliIo, result: { code: number }): Command {
  const program = new Command('kmeshctl')
    .description('Manage Kmesh node-to-node IPsec (ESP, rfc4106(gcm(aes))).')
    .exitOverride()
    .configureOutput({ writeOut: io.stdout, writeErr: io.stderr })
    .option('--kubeconfig <file>', 'kubeconfig file (default: $KUBECONFIG, ~/.kube/config, in-cluster)')
    .option('--context <name>', 'kubeconfig context to use (default: its current-context)')
    .option('-n, --namespace <name>', `namespace of the Secret and KmeshNodeInfos (default: ${KMESH_NAMESPACE})`)
    .option('--store <store>', 'where the secret lives: kubernetes | dir:PATH (default: kubernetes)')
    .option('--timeout <seconds>', "give up on an API request, or the dir store's lock, after this long (default: 15)")
    .version(`kmeshctl ${packageVersion()}`, '-V, --version', 'show the version')
    .helpCommand(false)
    .addHelpText('after', GLOBAL_HELP);
  const globals = () => program.opts<GlobalOptions>();

  program
    .command('help')
    .argument('[command...]', 'e.g. "secret create"')
    .description('Show the help of kmeshctl or of one of its commands')
    .action((names: string[]) => {
      let target: Command = program;
      for (const [i, name] of names.entries()) {
        const next = target.commands.find((c) => c.name() === name && c.name() !== 'help');
        if (next === undefined) {
          throw new UsageError(`no help for "${names.slice(0, i + 1).join(' ')}": no such command`);
        }
        target = next;
      }
      target.outputHelp();
    });

  const secret = program
    .command('secret')
    .description('Manage the IPsec pre-shared key (Secret kmesh-ipsec, data key ipSec)')
    .option('-k, --key <hex>', 'with no subcommand: same as "secret create --key"')
    .allowExcessArguments()
    .helpCommand(true) // `secret help create` (the top level has its own `help`, for any depth)
    .addHelpText('after', SECRET_HELP)
    .action(async (options: { key?: string }, command: Command) => {
      const [extra] = command.args;
      if (options.key === undefined) {
        if (extra !== undefined) throw new UsageError(`unknown command "secret ${extra}": use create, get or delete`);
        io.stderr(command.helpInformation());
        result.code = EXIT_USAGE;
        return;
      }
      await runCreate(joinKeyParts(options.key, command.args));
    });
  const secretKey = () => secret.opts<{ key?: string }>().key;

  async function runCreate(keyText: string | undefined) {
    const key = keyArgument(keyText);
    const store = await openStore(globals(), io);
    try {
      io.stdout(describeOutcome(await createOrRotateSecret(store, key)) + '\n');
    } catch (err) {
      if (err instanceof SameKeyError) throw new UsageError(`invalid --key: ${err.message}; nothing was changed`);
      throw err;
    }
  }
  function refuseKey(subcommand: string) {
    if (secretKey() !== undefined)
      throw new UsageError(`--key only applies to "secret create", not "secret ${subcommand}"`);
  }

  secret
    .command('create')
    .description('Create the secret with a new key, or rotate the key (SPI + 1) if it exists')
    .option('-k, --key <hex>', '36-byte key as hex (default: random from the OS CSPRNG)')
    .allowExcessArguments()
    .addHelpText('after', CREATE_HELP)
    .action((_options: unknown, command: Command) => runCreate(joinKeyParts(secretKey(), command.args)));

  secret
    .command('get')
    .description('Show the current key and configuration (key in hex)')
    .addOption(new Option('-o, --output <format>', 'output format').choices(['text', 'json']).default('text'))
    .addHelpText('after', GET_HELP)
    .action(async (options: { output: 'text' | 'json' }, command: Command) => {
      refuseArguments('get', command);
      refuseKey('get');
      const store = await openStore(globals(), io);
      const { secret: stored, key } = await readSecret(store, kmeshctlCommand(globals()));
      const view = secretView(stored, key);
      io.stdout(options.output === 'json' ? formatSecretJson(view) : formatSecretText(view));
    });

  secret
    .command('delete')
    .description('Delete the secret (the next create continues above every SPI still in use)')
    .addHelpText('after', DELETE_HELP)
    .action(async (_options: unknown, command: Command) => {
      refuseArguments('delete', command);
      refuseKey('delete');
      const store = await openStore(globals(), io);
      await deleteSecret(store);
      io.stdout(`IPsec secret deleted (${store.location})\n`);
    });

  addIpsecCommand(program, {
    stdout: io.stdout,
    openStore: (requestTimeoutMs) =>
      openStore(
        requestTimeoutMs === undefined ? globals() : { ...globals(), timeout: String(requestTimeoutMs / 1000) },
        io,
      ),
    timeoutSeconds: () => globals().timeout,
    setExitCode: (code) => (result.code = code),
    usage: (message) => new UsageError(message),
  });

  return program;
}

function oneLine(err: unknown): string {
  const text = err instanceof Error ? err.message : String(err);
  return text.split('\n', 1)[0] ?? '';
}

/** The command did what it was asked, but its output could not be written (e.g. stdout on a full disk). */
export const EXIT_OUTPUT_FAILED = 3;

/**
 * Standard output as a writer that never crashes the process: writes are tracked, a reader that went away (EPIPE,
 * `kmeshctl --help | head -1`) is not an error, and any other failure is reported once settled().
 */
function stdoutWriter(): { write: (text: string) => void; settled: () => Promise<string | undefined> } {
  const pending: Promise<string | undefined>[] = [];
  process.stdout.on('error', () => undefined); // reported through the write callbacks below
  return {
    write: (text) => {
      pending.push(
        new Promise((resolve) => {
          process.stdout.write(text, (err?: NodeJS.ErrnoException | null) => {
            if (!err || err.code === 'EPIPE') resolve(undefined);
            else resolve(err.code ?? err.message);
          });
        }),
      );
    },
    settled: async () => (await Promise.all(pending)).find((failure) => failure !== undefined),
  };
}

/** Runs kmeshctl with `argv` (without the node and script names); resolves to the exit code. */
export async function main(argv: string[], io: Partial<CliIo> = {}): Promise<number> {
  const out = io.stdout === undefined ? stdoutWriter() : undefined;
  const fullIo: CliIo = {
    stdout: io.stdout ?? out?.write ?? (() => undefined),
    stderr: io.stderr ?? ((text) => process.stderr.write(text)),
    env: io.env ?? process.env,
    ...(io.inClusterRoot === undefined ? {} : { inClusterRoot: io.inClusterRoot }),
  };
  const code = await run(argv, fullIo);
  const failure = await out?.settled();
  if (failure === undefined) return code;
  fullIo.stderr(
    code === EXIT_OK
      ? `error: cannot write the result to standard output (${failure}); the command itself succeeded\n`
      : `error: cannot write to standard output (${failure})\n`,
  );
  return code === EXIT_OK ? EXIT_OUTPUT_FAILED : code;
}

async function run(argv: string[], fullIo: CliIo): Promise<number> {
  const result = { code: EXIT_OK };
  const program = buildProgram(fullIo, result);
  try {
    await program.parseAsync(argv, { from: 'user' });
    return result.code;
  } catch (err) {
    if (err instanceof CommanderError) {
      // Commander already printed its message (or the help).
      if (err.code === 'commander.helpDisplayed' || err.code === 'commander.version') return EXIT_OK;
      if (err.code === 'commander.help' && err.exitCode === 0) return EXIT_OK; // `secret help create`
      return EXIT_USAGE;
    }
    if (err instanceof UsageError) {
      fullIo.stderr(`error: ${err.message}\n`);
      return EXIT_USAGE;
    }
    // StoreError, KubeConfigError, SpiExhaustedError and anything unforeseen: one line, never a stack trace.
    fullIo.stderr(`error: ${oneLine(err)}\n`);
    return EXIT_FAILED;
  }
}
