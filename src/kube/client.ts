// Loading the Kubernetes client configuration, shared by kmeshctl and the daemon: explicit file, $KUBECONFIG (merged),
// ~/.kube/config, or the in-cluster service account, in that order, then --context. The KubeConfig class comes from
// @kubernetes/client-node's config module alone (with its auth plugins: exec, oidc, azure, gcp, file tokens), not
// from the package index, which would load every generated API and model. One-line messages for every mistake.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { KubeConfig } from '@kubernetes/client-node/dist/config.js';

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
