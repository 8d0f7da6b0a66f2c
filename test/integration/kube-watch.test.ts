// kube/watch.ts against the fake API server: events in order, the watch query, and onDone called exactly once with
// what client-node's Watch gave (null when the server ends the stream, an AbortError after abort(), an error with
// `statusCode` when the server refuses the watch, the network error when there is no server).
import path from 'node:path';
import t from 'tap';
import type { Test } from 'tap';
import { loadKubeConfig } from '../../src/kube/client.js';
import { KubeRestClient } from '../../src/kube/rest.js';
import { watch } from '../../src/kube/watch.js';
import { FakeApiServer } from '../fixtures/fake-apiserver.js';
import type { FakeApiServerOptions } from '../fixtures/fake-apiserver.js';

const NS_PATH = '/api/v1/namespaces';

async function setup(t: Test, options: FakeApiServerOptions = {}) {
  const api = new FakeApiServer({ forbiddenTokens: { 'no-rights': 'mallory' }, ...options });
  await api.start();
  t.teardown(() => api.stop());
  const dir = t.testdir();
  const client = (token?: string) => {
    const file = api.writeKubeconfig(path.join(dir, `kubeconfig-${token ?? 'admin'}`), token ? { token } : {});
    const loaded = loadKubeConfig({ kubeconfig: file, env: {} });
    return new KubeRestClient({ config: loaded.config, server: loaded.server, timeoutMs: 5000 });
  };
  return { api, client };
}

interface Recorder {
  events: string[];
  done: unknown[];
  ended: Promise<unknown>;
  onEvent: (type: string, object: unknown) => void;
  onDone: (err: unknown) => void;
}

function recorder(): Recorder {
  let resolve: (err: unknown) => void = () => undefined;
  const r: Recorder = {
    events: [],
    done: [],
    ended: new Promise((res) => (resolve = res)),
    onEvent: (type, object) => r.events.push(`${type} ${(object as { metadata?: { name?: string } }).metadata?.name}`),
    onDone: (err) => {
      r.done.push(err);
      resolve(err);
    },
  };
  return r;
}

const until = async (cond: () => boolean) => {
  for (let i = 0; i < 500 && !cond(); i++) await new Promise((r) => setTimeout(r, 10));
};

t.test('events arrive in order; the server ending the stream is onDone(null), once', async (t) => {
  const { api, client } = await setup(t);
  const r = recorder();
  await watch(client(), NS_PATH, { allowWatchBookmarks: true, timeoutSeconds: 30 }, r.onEvent, r.onDone);
  await until(() => r.events.length === 3);
  t.same(
    [...r.events].sort(),
    ['ADDED default', 'ADDED kmesh-system', 'ADDED kube-system'],
    'the state as ADDED events',
  );
  api.put('namespaces', { metadata: { name: 'mesh', labels: { a: 'b' } } });
  api.remove('namespaces', undefined, 'mesh');
  api.bookmark();
  await until(() => r.events.length === 6);
  t.same(r.events.slice(3), ['ADDED mesh', 'DELETED mesh', 'BOOKMARK undefined']);
  const watchRequest = api.requests.find((q) => q.query.watch === 'true');
  t.same(watchRequest?.query, { watch: 'true', allowWatchBookmarks: 'true', timeoutSeconds: '30' });
  api.closeWatches();
  t.equal(await r.ended, null);
  await new Promise((res) => setTimeout(res, 50));
  t.equal(r.done.length, 1, 'onDone once');
});

t.test('abort() ends the watch with an AbortError, once, and nothing arrives after it', async (t) => {
  const { api, client } = await setup(t);
  const r = recorder();
  const handle = await watch(client(), NS_PATH, { resourceVersion: api.resourceVersion }, r.onEvent, r.onDone);
  await until(() => api.watchCount === 1);
  handle.abort();
  t.match(await r.ended, { name: 'AbortError' });
  api.put('namespaces', { metadata: { name: 'late' } });
  handle.abort();
  await new Promise((res) => setTimeout(res, 50));
  t.same(r.events, []);
  t.equal(r.done.length, 1);
  await until(() => api.watchCount === 0);
  t.equal(api.watchCount, 0, 'the server saw the connection go');
});

t.test('a refused watch reports the status as statusCode: 403, and 410 for a compacted version', async (t) => {
  const { api, client } = await setup(t, { goneAs: 'http' });
  const forbidden = recorder();
  await watch(client('no-rights'), NS_PATH, {}, forbidden.onEvent, forbidden.onDone);
  t.match(await forbidden.ended, { statusCode: 403, message: 'Forbidden' });
  api.put('namespaces', { metadata: { name: 'x' } });
  const old = Number(api.resourceVersion) - 1;
  api.compactHistory();
  const gone = recorder();
  await watch(client(), NS_PATH, { resourceVersion: String(old) }, gone.onEvent, gone.onDone);
  t.match(await gone.ended, { statusCode: 410 });
  t.same([forbidden.done.length, gone.done.length], [1, 1]);
});

t.test('no server: onDone gets the connection error', async (t) => {
  const { api, client } = await setup(t);
  const c = client();
  await api.stop();
  const r = recorder();
  await watch(c, NS_PATH, {}, r.onEvent, r.onDone);
  t.match(await r.ended, { code: 'ECONNREFUSED' });
});
