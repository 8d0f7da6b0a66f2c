// Kubernetes connection basics shared by kmeshctl and the daemon: loading the kubeconfig (explicit file, $KUBECONFIG,
// ~/.kube/config, or the in-cluster service account, in that order), per-request timeouts, and turning client
// failures (connection refused, TLS, 401/403/404/409, timeouts) into one-line messages saying what to do.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ApiException, KubeConfig, Observable } from '@kubernetes/client-node';
import type {
  ConfigurationOptions,
  ObservableMiddleware,
  RequestContext,
  ResponseContext,
} from '@kubernetes/client-node';

/** Where the in-cluster service account is mounted (relative to a root, `/` in a pod). */
export const SERVICE_ACCOUNT_DIR = '/var/run/secrets/kubernetes.io/serviceaccount';

/** No usable Kubernetes configuration; the message says what to pass or fix. */
export class KubeConfigError extends Error {
  override readonly name = 'KubeConfigError';
}

export interface KubeConfigSource {
  /** `--kubeconfig FILE`; wins over everything else. */
  kubeconfig?: string | undefined;
  /** `--context NAME`; default is the kubeconfig's current-context. */
  context?: string | undefined;
  /** Environment to read KUBECONFIG, HOME and KUBERNETES_SERVICE_HOST/PORT from (default process.env). */
  env?: NodeJS.ProcessEnv | undefined;
  /** Root under which the service account directory is looked up (default `/`; tests point it elsewhere). */
  inClusterRoot?: string | undefined;
}

export interface LoadedKubeConfig {
  config: KubeConfig;
  /** What was loaded, for messages: a file path, `$KUBECONFIG (a:b)` or `in-cluster service account`. */
  source: string;
  /** The API server URL of the chosen context. */
  server: string;
}

function firstLine(text: string): string {
  return text.split('\n', 1)[0]?.trim() ?? '';
}

function loadFile(config: KubeConfig, file: string, label: string): void {
  try {
    config.loadFromFile(file);
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    if (e.code === 'ENOENT') throw new KubeConfigError(`${label} ${file} does not exist`);
    if (e.code === 'EACCES') throw new KubeConfigError(`${label} ${file} is not readable (permission denied)`);
    if (e.code === 'EISDIR') throw new KubeConfigError(`${label} ${file} is a directory, not a kubeconfig file`);
    throw new KubeConfigError(`${label} ${file} is not a valid kubeconfig: ${firstLine(e.message)}`);
  }
}

function homeDir(env: NodeJS.ProcessEnv): string | undefined {
  const home = env.HOME ?? env.USERPROFILE;
  if (home) return home;
  try {
    return os.homedir();
  } catch {
    return undefined;
  }
}

/**
 * Loads the kubeconfig by the kubectl rules: `--kubeconfig`, else `$KUBECONFIG` (a `:`-separated list, merged; files
 * that do not exist are skipped as kubectl does), else `~/.kube/config`, else the in-cluster service account. Then
 * applies `--context`. Throws KubeConfigError with a one-line explanation when nothing usable is found.
 */
export function loadKubeConfig(options: KubeConfigSource = {}): LoadedKubeConfig {
  const env = options.env ?? process.env;
  const config = new KubeConfig();
  let source: string;
  if (options.kubeconfig !== undefined) {
    const file = path.resolve(options.kubeconfig);
    loadFile(config, file, 'kubeconfig');
    source = file;
  } else if (env.KUBECONFIG) {
    const files = env.KUBECONFIG.split(path.delimiter).filter((f) => f !== '');
    const existing = files.filter((f) => fs.existsSync(f));
    const [first, ...rest] = existing;
    if (first === undefined) {
      throw new KubeConfigError(`KUBECONFIG=${env.KUBECONFIG} names no existing file: fix or unset it`);
    }
    loadFile(config, first, 'kubeconfig');
    for (const file of rest) {
      const more = new KubeConfig();
      loadFile(more, file, 'kubeconfig');
      config.mergeConfig(more, true);
    }
    source = existing.length === 1 ? first : `$KUBECONFIG (${existing.join(path.delimiter)})`;
  } else {
    const home = homeDir(env);
    const defaultFile = home ? path.join(home, '.kube', 'config') : undefined;
    const root = options.inClusterRoot ?? '';
    if (defaultFile !== undefined && fs.existsSync(defaultFile)) {
      loadFile(config, defaultFile, 'kubeconfig');
      source = defaultFile;
    } else if (
      env.KUBERNETES_SERVICE_HOST &&
      env.KUBERNETES_SERVICE_PORT &&
      fs.existsSync(path.join(root, SERVICE_ACCOUNT_DIR, 'token'))
    ) {
      withEnv(env, () => config.loadFromCluster(root));
      source = 'in-cluster service account';
    } else {
      throw new KubeConfigError(
        'no Kubernetes configuration found: pass --kubeconfig FILE, set KUBECONFIG, create ~/.kube/config, ' +
          'or run inside a pod (for a local setup without a cluster use --store dir:PATH)',
      );
    }
  }
  if (options.context !== undefined) {
    if (!config.getContextObject(options.context)) {
      const known = config.getContexts().map((c) => c.name);
      throw new KubeConfigError(
        `context "${options.context}" is not in ${source} (contexts: ${known.length ? known.join(', ') : 'none'})`,
      );
    }
    config.setCurrentContext(options.context);
  }
  const contextName = config.getCurrentContext();
  if (!contextName) {
    throw new KubeConfigError(`${source} sets no current-context: pass --context NAME`);
  }
  const context = config.getContextObject(contextName);
  if (!context) {
    throw new KubeConfigError(`${source}: current context "${contextName}" is not defined in it`);
  }
  const cluster = config.getCurrentCluster();
  if (!cluster) {
    throw new KubeConfigError(
      `${source}: context "${contextName}" refers to cluster "${context.cluster}", not defined`,
    );
  }
  if (!cluster.server) {
    throw new KubeConfigError(`${source}: cluster "${cluster.name}" has no server address`);
  }
  return { config, source, server: cluster.server };
}

/** loadFromCluster reads process.env; run it with the caller's environment in place. */
function withEnv(env: NodeJS.ProcessEnv, fn: () => void): void {
  if (env === process.env) {
    fn();
    return;
  }
  const keys = ['KUBERNETES_SERVICE_HOST', 'KUBERNETES_SERVICE_PORT'] as const;
  const saved = keys.map((k) => process.env[k]);
  keys.forEach((k) => {
    const value = env[k];
    if (value === undefined) Reflect.deleteProperty(process.env, k);
    else process.env[k] = value;
  });
  try {
    fn();
  } finally {
    keys.forEach((k, i) => {
      const value = saved[i];
      if (value === undefined) Reflect.deleteProperty(process.env, k);
      else process.env[k] = value;
    });
  }
}

/**
 * Per-call options that abort a request (connect, TLS handshake and response) after `timeoutMs`. Pass as the last
 * argument of any generated API call: `api.readNamespacedSecret({ name, namespace }, requestTimeout(10_000))`.
 */
export function requestTimeout(timeoutMs: number): ConfigurationOptions {
  const middleware: ObservableMiddleware = {
    pre: (context: RequestContext) => {
      context.setSignal(AbortSignal.timeout(timeoutMs));
      return new Observable(Promise.resolve(context));
    },
    post: (response: ResponseContext) => new Observable(Promise.resolve(response)),
  };
  return { middleware: [middleware], middlewareMergeStrategy: 'append' };
}

/** HTTP status of a failed API call (ApiException, or a watch's `statusCode`), if it got that far. */
export function kubeErrorStatus(err: unknown): number | undefined {
  if (err instanceof ApiException) return err.code;
  if (typeof err === 'object' && err !== null) {
    const status = (err as { statusCode?: unknown; code?: unknown }).statusCode;
    if (typeof status === 'number') return status;
  }
  return undefined;
}

/** The `message` of the Kubernetes Status object in an error response, if there is one. */
export function kubeStatusMessage(err: unknown): string | undefined {
  if (!(err instanceof ApiException)) return undefined;
  let body: unknown = err.body;
  if (typeof body === 'string') {
    const text = body;
    try {
      body = JSON.parse(text);
    } catch {
      return text.trim() === '' ? undefined : firstLine(text);
    }
  }
  if (typeof body === 'object' && body !== null) {
    const message = (body as { message?: unknown }).message;
    if (typeof message === 'string' && message !== '') return firstLine(message);
  }
  return undefined;
}

const TLS_CODES = new Set([
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'CERT_HAS_EXPIRED',
  'CERT_NOT_YET_VALID',
  'CERT_SIGNATURE_FAILURE',
  'CERT_UNTRUSTED',
  'ERR_TLS_CERT_ALTNAME_INVALID',
  'EPROTO',
  'ERR_SSL_WRONG_VERSION_NUMBER',
]);

/** The errno-style code of a network failure, looking through node-fetch's FetchError wrapper. */
function networkCode(err: unknown): string | undefined {
  if (typeof err !== 'object' || err === null) return undefined;
  const e = err as { code?: unknown; errno?: unknown; name?: unknown; type?: unknown; cause?: unknown };
  if (e.name === 'AbortError' || e.type === 'aborted' || e.name === 'TimeoutError') return 'TIMEOUT';
  if (typeof e.code === 'string') return e.code;
  if (typeof e.errno === 'string') return e.errno;
  return e.cause === undefined ? undefined : networkCode(e.cause);
}

/**
 * One line explaining a failed API call to `server` while doing `action` (e.g. `read Secret kmesh-system/kmesh-ipsec`),
 * with what to do about it. Never includes a stack trace.
 */
export function describeKubeError(err: unknown, server: string, action: string): string {
  const status = kubeErrorStatus(err);
  if (status !== undefined) {
    const detail = kubeStatusMessage(err);
    const says = detail ? `: ${detail}` : '';
    switch (status) {
      case 401:
        return (
          `cannot ${action}: the API server at ${server} rejected the credentials (401 Unauthorized); ` +
          'refresh the token or certificate in your kubeconfig, or pick another --context'
        );
      case 403:
        return `cannot ${action}: permission denied (403 Forbidden)${says}; ask for RBAC access or use another --context`;
      case 404:
        return `cannot ${action}: not found (404)${says}`;
      case 409:
        return `cannot ${action}: conflict (409)${says}; someone else changed it, try again`;
      case 410:
        return `cannot ${action}: the requested version is gone (410)${says}`;
      case 422:
        return `cannot ${action}: the API server refused the object (422 Invalid)${says}`;
      case 429:
        return `cannot ${action}: the API server is overloaded (429 Too Many Requests)${says}; try again shortly`;
      default:
        return status >= 500
          ? `cannot ${action}: the API server at ${server} failed (${status})${says}; try again, check the control plane`
          : `cannot ${action}: the API server answered ${status}${says}`;
    }
  }
  const code = networkCode(err);
  if (code === 'ECONNREFUSED') {
    return `cannot ${action}: connection to the API server at ${server} refused; is the cluster running and is the server address in your kubeconfig right?`;
  }
  if (code === 'ENOTFOUND' || code === 'EAI_AGAIN') {
    return `cannot ${action}: cannot resolve the API server host of ${server}; check the server address in your kubeconfig`;
  }
  if (code === 'TIMEOUT' || code === 'ETIMEDOUT' || code === 'EHOSTUNREACH' || code === 'ENETUNREACH') {
    return `cannot ${action}: the API server at ${server} did not answer in time; check the network path and the server address`;
  }
  if (code === 'ECONNRESET' || code === 'EPIPE') {
    return `cannot ${action}: the API server at ${server} dropped the connection; try again`;
  }
  if (code !== undefined && (TLS_CODES.has(code) || code.startsWith('ERR_TLS') || code.startsWith('ERR_SSL'))) {
    return (
      `cannot ${action}: TLS verification of the API server at ${server} failed (${code}); ` +
      'check certificate-authority(-data) and the server name in your kubeconfig'
    );
  }
  const message = err instanceof Error ? firstLine(err.message) : String(err);
  return `cannot ${action}: ${message || 'unknown error'}${code ? ` (${code})` : ''}`;
}
