// The fake API server fixture, checked through the real @kubernetes/client-node: CRUD with Status errors,
// optimistic concurrency, patch types, the status subresource, watches (selectors, resume, 410), the informer's
// recovery, failure injection and restart on the same port.
import {
  CoreV1Api,
  CustomObjectsApi,
  KubeConfig,
  KubernetesObjectApi,
  makeInformer,
  PatchStrategy,
  setHeaderOptions,
  Watch,
} from '@kubernetes/client-node';
import type { KubernetesObject, V1Pod } from '@kubernetes/client-node';
import t from 'tap';
import type { Test } from 'tap';
import { FakeApiServer } from '../fixtures/fake-apiserver.js';
import type { KubeObject } from '../fixtures/fake-apiserver.js';
import { nodeInfo, startCluster } from '../fixtures/kmeshctl-harness.js';

const KNI = { group: 'kmesh.net', version: 'v1alpha1', plural: 'kmeshnodeinfos', namespace: 'kmesh-system' };
const MERGE = setHeaderOptions('Content-Type', PatchStrategy.MergePatch);

async function client(t: Test, options = {}) {
  const cluster = await startCluster(t, options);
  const kc = new KubeConfig();
  kc.loadFromFile(cluster.kubeconfig);
  return { ...cluster, kc, core: kc.makeApiClient(CoreV1Api), custom: kc.makeApiClient(CustomObjectsApi) };
}

async function until(check: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

function errorOf(promise: Promise<unknown>): Promise<{ code?: number; body?: unknown }> {
  return promise.then(
    () => ({}),
    (err: unknown) => err as { code?: number; body?: unknown },
  );
}

function statusOf(err: { body?: unknown }): { message?: string; reason?: string; code?: number } {
  return JSON.parse(String(err.body)) as { message?: string; reason?: string; code?: number };
}

type Obj = KubernetesObject & { spec?: Record<string, unknown>; status?: Record<string, unknown> };

t.test('CRUD on a custom resource with real Status errors and resourceVersion checks', async (t) => {
  const { custom, api } = await client(t);
  const created = (await custom.createNamespacedCustomObject({ ...KNI, body: nodeInfo('node-1', 1) })) as Obj;
  t.equal(created.metadata?.name, 'node-1');
  t.match(created.metadata, { namespace: 'kmesh-system', generation: 1, resourceVersion: /^\d+$/, uid: /./ });
  const dup = await errorOf(custom.createNamespacedCustomObject({ ...KNI, body: nodeInfo('node-1', 1) }));
  t.equal(dup.code, 409);
  t.match(statusOf(dup), { reason: 'AlreadyExists', message: 'kmeshnodeinfos.kmesh.net "node-1" already exists' });
  const missing = await errorOf(custom.getNamespacedCustomObject({ ...KNI, name: 'nope' }));
  t.equal(missing.code, 404);
  t.match(statusOf(missing), {
    kind: 'Status',
    reason: 'NotFound',
    message: 'kmeshnodeinfos.kmesh.net "nope" not found',
  });

  const replaced = (await custom.replaceNamespacedCustomObject({
    ...KNI,
    name: 'node-1',
    body: { ...created, spec: { ...created.spec, spi: 2 } },
  })) as Obj;
  t.equal(replaced.spec?.spi, 2);
  t.equal(replaced.metadata?.generation, 2, 'spec change bumps generation');
  t.ok(Number(replaced.metadata?.resourceVersion) > Number(created.metadata?.resourceVersion));
  const stale = await errorOf(
    custom.replaceNamespacedCustomObject({
      ...KNI,
      name: 'node-1',
      body: { ...created, spec: { ...created.spec, spi: 3 } },
    }),
  );
  t.equal(stale.code, 409);
  t.match(statusOf(stale), { reason: 'Conflict', message: /the object has been modified; please apply your changes/ });

  const same = (await custom.replaceNamespacedCustomObject({ ...KNI, name: 'node-1', body: replaced })) as Obj;
  t.equal(same.metadata?.resourceVersion, replaced.metadata?.resourceVersion, 'no-op update keeps the resourceVersion');

  const list = (await custom.listNamespacedCustomObject({ ...KNI })) as {
    kind: string;
    items: Obj[];
    metadata: { resourceVersion: string };
  };
  t.equal(list.kind, 'KmeshNodeInfoList');
  t.same(
    list.items.map((i) => i.metadata?.name),
    ['node-1'],
  );
  t.equal(list.metadata.resourceVersion, api.resourceVersion);

  const deleted = (await custom.deleteNamespacedCustomObject({ ...KNI, name: 'node-1' })) as Obj;
  t.equal(deleted.metadata?.name, 'node-1', 'custom resources answer DELETE with the object');
  t.equal(api.get('kmeshnodeinfos', 'kmesh-system', 'node-1'), undefined);
});

t.test('patches: merge, JSON patch, status subresource, resourceVersion precondition', async (t) => {
  const { custom, core, api } = await client(t);
  await custom.createNamespacedCustomObject({ ...KNI, body: nodeInfo('node-1', 1) });

  const merged = (await custom.patchNamespacedCustomObject(
    { ...KNI, name: 'node-1', body: { metadata: { labels: { a: 'b' } }, spec: { spi: 5 }, status: { ignored: true } } },
    MERGE,
  )) as Obj;
  t.equal(merged.spec?.spi, 5);
  t.same(merged.metadata?.labels, { a: 'b' });
  t.equal(merged.status, undefined, 'the main resource does not take status');

  const withStatus = (await custom.patchNamespacedCustomObjectStatus(
    { ...KNI, name: 'node-1', body: { status: { phase: 'Ready' }, spec: { spi: 99 } } },
    MERGE,
  )) as Obj;
  t.same(withStatus.status, { phase: 'Ready' });
  t.equal(withStatus.spec?.spi, 5, '/status does not take spec');

  const jsonPatched = (await custom.patchNamespacedCustomObject({
    ...KNI,
    name: 'node-1',
    body: [
      { op: 'test', path: '/spec/spi', value: 5 },
      { op: 'replace', path: '/spec/spi', value: 6 },
      { op: 'add', path: '/spec/addresses/-', value: '10.0.0.2' },
    ],
  })) as Obj;
  t.equal(jsonPatched.spec?.spi, 6);
  t.same(jsonPatched.spec?.addresses, ['10.0.0.1', '10.0.0.2']);
  t.same(jsonPatched.status, { phase: 'Ready' }, 'status kept');

  const failedTest = await errorOf(
    custom.patchNamespacedCustomObject({ ...KNI, name: 'node-1', body: [{ op: 'test', path: '/spec/spi', value: 1 }] }),
  );
  t.equal(failedTest.code, 422);
  const stale = await errorOf(
    custom.patchNamespacedCustomObject(
      { ...KNI, name: 'node-1', body: { metadata: { resourceVersion: '1' }, spec: { spi: 7 } } },
      MERGE,
    ),
  );
  t.equal(stale.code, 409, 'a resourceVersion in a patch is a precondition');

  api.put('nodes', { metadata: { name: 'node-1' }, spec: { podCIDRs: ['10.244.1.0/24'] } });
  const node = await core.patchNodeStatus(
    {
      name: 'node-1',
      body: { status: { nodeInfo: { bootID: 'b-1' }, addresses: [{ type: 'InternalIP', address: '10.0.0.1' }] } },
    },
    MERGE,
  );
  t.equal(node.status?.nodeInfo?.bootID, 'b-1');
  t.same(node.spec?.podCIDRs, ['10.244.1.0/24']);
});

t.test('namespaced objects need their namespace; deleting a namespace deletes its objects', async (t) => {
  const { core, api } = await client(t);
  // eslint-disable-next-line @typescript-eslint/no-unsafe-class-instance-assignment -- client-node models are classes; the wire format is plain JSON
  const noNs = await errorOf(core.createNamespacedSecret({ namespace: 'ghost', body: { metadata: { name: 's' } } }));
  t.equal(noNs.code, 404);
  t.match(statusOf(noNs), { message: 'namespaces "ghost" not found' });
  // eslint-disable-next-line @typescript-eslint/no-unsafe-class-instance-assignment -- client-node models are classes; the wire format is plain JSON
  await core.createNamespace({ body: { metadata: { name: 'tmp' } } });
  // eslint-disable-next-line @typescript-eslint/no-unsafe-class-instance-assignment -- client-node models are classes; the wire format is plain JSON
  await core.createNamespacedSecret({ namespace: 'tmp', body: { metadata: { name: 's' }, stringData: { k: 'v' } } });
  t.same((api.get('secrets', 'tmp', 's') as { data: unknown }).data, { k: 'dg==' }, 'stringData lands in data');
  await core.deleteNamespace({ name: 'tmp' });
  t.same(api.list('secrets', 'tmp'), []);
});

t.test('auth: 401 without a valid token, 403 for a forbidden one, authorize hook', async (t) => {
  const { kc, api } = await client(t, {
    authorize: (a: { verb: string; resource: string }) => !(a.verb === 'delete' && a.resource === 'nodes'),
  });
  const core = kc.makeApiClient(CoreV1Api);
  api.put('nodes', { metadata: { name: 'n1' } });
  const denied = await errorOf(core.deleteNode({ name: 'n1' }));
  t.equal(denied.code, 403);
  t.match(statusOf(denied), {
    message:
      'nodes "n1" is forbidden: User "kmesh-admin" cannot delete resource "nodes" in API group "" at the cluster scope',
  });
  kc.setCurrentContext('bad-token');
  t.equal((await errorOf(kc.makeApiClient(CoreV1Api).listNode())).code, 401);
  kc.setCurrentContext('forbidden');
  t.equal((await errorOf(kc.makeApiClient(CoreV1Api).listNode())).code, 403);
});

t.test('discovery lets the generic object client find custom resources', async (t) => {
  const { kc, api } = await client(t);
  api.put('kmeshnodeinfos', nodeInfo('node-9', 9));
  const objects = KubernetesObjectApi.makeApiClient(kc);
  const read: Obj = await objects.read({
    apiVersion: 'kmesh.net/v1alpha1',
    kind: 'KmeshNodeInfo',
    metadata: { name: 'node-9', namespace: 'kmesh-system' },
  });
  t.equal(read.spec?.spi, 9);
});

t.test('list and watch with label and field selectors; objects leaving a selector are DELETED', async (t) => {
  const { kc, core, api } = await client(t);
  const pod = (name: string, nodeName: string, labels: Record<string, string>): KubeObject => ({
    metadata: { name, namespace: 'default', labels },
    spec: { nodeName, containers: [] },
  });
  api.put('pods', pod('a', 'node-1', { app: 'x', tier: 'web' }));
  api.put('pods', pod('b', 'node-2', { app: 'x' }));
  api.put('pods', pod('c', 'node-1', { app: 'y' }));
  const names = async (labelSelector?: string, fieldSelector?: string) =>
    (await core.listNamespacedPod({ namespace: 'default', labelSelector, fieldSelector })).items.map(
      (p) => p.metadata?.name,
    );
  t.same(await names('app=x'), ['a', 'b']);
  t.same(await names('app in (x,y),tier'), ['a']);
  t.same(await names('!tier,app!=y'), ['b']);
  t.same(await names(undefined, 'spec.nodeName=node-1'), ['a', 'c']);
  t.same(await names('app=x', 'spec.nodeName!=node-1'), ['b']);
  t.equal((await errorOf(names('app in (x'))).code, 400);

  const events: string[] = [];
  const watch = new Watch(kc);
  const controller = await watch.watch(
    '/api/v1/pods',
    { fieldSelector: 'spec.nodeName=node-1' },
    (type: string, obj: V1Pod) => events.push(`${type} ${obj.metadata?.name ?? ''}`),
    () => undefined,
  );
  await until(() => events.length === 2, 'initial events');
  t.same(events, ['ADDED a', 'ADDED c']);
  api.put('pods', pod('b', 'node-1', { app: 'x' }));
  api.put('pods', pod('a', 'node-2', { app: 'x', tier: 'web' }));
  api.put('pods', { ...pod('c', 'node-1', { app: 'y' }), status: { phase: 'Running' } });
  api.remove('pods', 'default', 'c');
  await until(() => events.length === 6, 'live events');
  t.same(events.slice(2), ['ADDED b', 'DELETED a', 'MODIFIED c', 'DELETED c']);
  controller.abort();
  await until(() => api.watchCount === 0, 'the server to notice the closed watch');
});

t.test('watch resumes from a resourceVersion; compacted history gives 410', async (t) => {
  const { kc, api } = await client(t);
  api.put('kmeshnodeinfos', nodeInfo('n1', 1));
  const mark = api.resourceVersion;
  api.put('kmeshnodeinfos', nodeInfo('n1', 2));
  api.put('kmeshnodeinfos', nodeInfo('n2', 1));
  const events: string[] = [];
  const watch = new Watch(kc);
  const path = '/apis/kmesh.net/v1alpha1/namespaces/kmesh-system/kmeshnodeinfos';
  const c1 = await watch.watch(
    path,
    { resourceVersion: mark },
    (type: string, obj: Obj) => events.push(`${type} ${obj.metadata?.name ?? ''} ${String(obj.spec?.spi)}`),
    () => undefined,
  );
  await until(() => events.length === 2, 'replayed events');
  t.same(events, ['MODIFIED n1 2', 'ADDED n2 1'], 'only what happened after the resourceVersion');
  c1.abort();

  api.compactHistory();
  let gone: unknown;
  let ended = false;
  await watch.watch(
    path,
    { resourceVersion: mark },
    (type: string, obj: { code?: number }) => (gone = { type, code: obj.code }),
    () => (ended = true),
  );
  await until(() => ended, 'the expired watch to end');
  t.same(gone, { type: 'ERROR', code: 410 }, 'like the real server: an ERROR event carrying a 410 Status');

  const httpGone = new FakeApiServer({ goneAs: 'http' });
  await httpGone.start();
  t.teardown(() => httpGone.stop());
  httpGone.put('kmeshnodeinfos', nodeInfo('n1', 1));
  httpGone.compactHistory();
  const kc2 = new KubeConfig();
  kc2.loadFromFile(httpGone.writeKubeconfig(`${t.testdir()}/kc`));
  let doneErr: { statusCode?: number } | undefined;
  await new Watch(kc2).watch(
    path,
    { resourceVersion: '1000' },
    () => undefined,
    (err: { statusCode?: number }) => (doneErr = err),
  );
  await until(() => doneErr !== undefined, 'the 410 answer');
  t.equal(doneErr?.statusCode, 410);
});

t.test('the informer keeps up across closed watches, expired history and a server restart', async (t) => {
  const { kc, custom, api } = await client(t);
  api.put('kmeshnodeinfos', nodeInfo('n1', 1));
  const informer = makeInformer(
    kc,
    '/apis/kmesh.net/v1alpha1/namespaces/kmesh-system/kmeshnodeinfos',
    () => custom.listNamespacedCustomObject({ ...KNI }) as never,
  );
  const seen = new Map<string, number>();
  const errors: unknown[] = [];
  const record = (obj: Obj) => seen.set(obj.metadata?.name ?? '', Number(obj.spec?.spi));
  informer.on('add', record);
  informer.on('update', record);
  informer.on('delete', (obj: Obj) => seen.delete(obj.metadata?.name ?? ''));
  informer.on('error', (err: unknown) => errors.push(err));
  await informer.start();
  t.teardown(() => informer.stop().catch(() => undefined));
  await until(() => seen.get('n1') === 1 && api.watchCount === 1, 'initial list and watch');

  api.closeWatches();
  api.put('kmeshnodeinfos', nodeInfo('n1', 2));
  await until(() => seen.get('n1') === 2, 'the update after the watch was closed');

  api.closeWatches();
  api.put('kmeshnodeinfos', nodeInfo('n2', 1));
  api.compactHistory();
  await until(() => seen.get('n2') === 1, 'relist after 410');
  t.same(errors, []);

  await api.stop();
  await until(() => errors.length > 0, 'the informer to report the dropped server');
  await api.start();
  api.put('kmeshnodeinfos', nodeInfo('n3', 1));
  await informer.start(); // client-node does not restart after errors other than 410: the caller does
  await until(() => seen.get('n3') === 1, 'events after the restart');
});

t.test('injected failures: status codes for a number of requests, then normal service', async (t) => {
  const { core, api } = await client(t);
  api.failNext({ path: '/api/v1/nodes', status: 503, times: 2 });
  t.equal((await errorOf(core.listNode())).code, 503);
  t.equal((await errorOf(core.listNode())).code, 503);
  t.same((await core.listNode()).items, []);
  api.failNext({ method: 'GET', status: 429, times: Infinity });
  t.equal((await errorOf(core.listNode())).code, 429);
  api.clearFailures();
  t.same((await core.listNode()).items, []);
  t.match(api.requests.at(-1), { method: 'GET', path: '/api/v1/nodes', user: 'kmesh-admin', status: 200 });
});

t.test('injected delay: a held-back request is answered normally, and processed after later ones', async (t) => {
  const { custom, api } = await client(t);
  api.delayNext({ method: 'POST', path: '/kmeshnodeinfos', delayMs: 300 });
  const first = custom.createNamespacedCustomObject({ ...KNI, body: nodeInfo('first', 1) });
  await until(() => api.requests.some((r) => r.method === 'POST'), 'the first POST to arrive');
  await custom.createNamespacedCustomObject({ ...KNI, body: nodeInfo('second', 1) });
  t.match(await first, { metadata: { name: 'first' } }, 'answered normally');
  const rv = (name: string) => Number(api.get('kmeshnodeinfos', 'kmesh-system', name)?.metadata?.resourceVersion);
  t.ok(rv('first') > rv('second'), 'the held-back create was processed after the later one');
});
