// Shared by the kmeshctl integration tests: a fresh fake API server per test, and an in-process kmeshctl runner
// that captures stdout/stderr.
import path from 'node:path';
import type { Test } from 'tap';
import { main } from '../../src/cli/kmeshctl.js';
import { FakeApiServer } from '../fixtures/fake-apiserver.js';
import type { FakeApiServerOptions } from '../fixtures/fake-apiserver.js';

export const TOKEN = 'test-token';
export const FORBIDDEN_TOKEN = 'forbidden-token';

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs kmeshctl in-process with only the given environment (HOME defaults to an empty test directory). */
export async function kmeshctl(
  args: string[],
  env: NodeJS.ProcessEnv,
  extra: { inClusterRoot?: string } = {},
): Promise<CliResult> {
  let stdout = '';
  let stderr = '';
  const code = await main(args, {
    stdout: (s) => (stdout += s),
    stderr: (s) => (stderr += s),
    env,
    ...extra,
  });
  return { code, stdout, stderr };
}

export interface Cluster {
  api: FakeApiServer;
  dir: string;
  kubeconfig: string;
  env: NodeJS.ProcessEnv;
  /** kmeshctl with --kubeconfig pointing at the fake server. */
  run: (...args: string[]) => Promise<CliResult>;
}

/** A fake API server for one test (stopped at teardown) plus a kubeconfig for it. */
export async function startCluster(t: Test, options: FakeApiServerOptions = {}): Promise<Cluster> {
  const api = new FakeApiServer({
    tokens: { [TOKEN]: 'kmesh-admin' },
    forbiddenTokens: { [FORBIDDEN_TOKEN]: 'mallory' },
    ...options,
  });
  await api.start();
  t.teardown(() => api.stop());
  const dir = t.testdir({ home: {} });
  const kubeconfig = api.writeKubeconfig(path.join(dir, 'kubeconfig'), {
    token: TOKEN,
    extraContexts: { forbidden: FORBIDDEN_TOKEN, 'bad-token': 'no-such-token' },
  });
  const env = { HOME: path.join(dir, 'home') };
  return { api, dir, kubeconfig, env, run: (...args) => kmeshctl(['--kubeconfig', kubeconfig, ...args], env) };
}

/** The ipSec payload of the Secret in the fake server, decoded from Kubernetes' base64. */
export function secretPayload(api: FakeApiServer, namespace = 'kmesh-system'): string | undefined {
  const secret = api.get('secrets', namespace, 'kmesh-ipsec') as { data?: Record<string, string> } | undefined;
  const data = secret?.data?.ipSec;
  return data === undefined ? undefined : Buffer.from(data, 'base64').toString('utf8');
}

/** Requests that changed something (anything but GET). */
export function writes(api: FakeApiServer): string[] {
  return api.requests.filter((r) => r.method !== 'GET').map((r) => `${r.method} ${r.path} -> ${r.status}`);
}

export function nodeInfo(name: string, spi: unknown, namespace = 'kmesh-system') {
  return {
    apiVersion: 'kmesh.net/v1alpha1',
    kind: 'KmeshNodeInfo',
    metadata: { name, namespace },
    spec: { spi, addresses: ['10.0.0.1'], bootID: '550e8400-e29b-41d4-a716-446655440000', podCIDRS: ['10.244.1.0/24'] },
  };
}
