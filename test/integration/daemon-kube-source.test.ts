// The Kubernetes source against the fake API server, authorised with exactly deploy/rbac.yaml's rules:
// initial sync, publishing with an ownerReference, peers/pods/namespaces followed through watches, and
// watches resuming after an API error, a compaction (410) and a server restart.
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadAllYaml } from '@kubernetes/client-node';
import t from 'tap';
import { KubeSource } from '../../src/daemon/sources/kube-source.js';
import { loadKubeConfig } from '../../src/kube/client.js';
import { FakeApiServer, type AuthorizationAttributes } from '../fixtures/fake-apiserver.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const BOOT = '550e8400-e29b-41d4-a716-446655440000';

interface Rule {
  apiGroups: string[];
  resources: string[];
  verbs: string[];
}

/** Authorizer implementing deploy/rbac.yaml (ClusterRole everywhere, Role in its namespace). */
function rbacAuthorizer(): { authorize: (a: AuthorizationAttributes) => boolean; denied: string[] } {
  const docs = loadAllYaml(fs.readFileSync(path.join(root, 'deploy/rbac.yaml'), 'utf8')) as {
    kind: string;
    metadata: { namespace?: string };
    rules?: Rule[];
  }[];
  const grants = docs
    .filter((d) => d.kind === 'ClusterRole' || d.kind === 'Role')
    .flatMap((d) =>
      (d.rules ?? []).map((r) => ({ ...r, namespace: d.kind === 'Role' ? d.metadata.namespace : undefined })),
    );
  const denied: string[] = [];
  return {
    denied,
    authorize: (a) => {
      const ok = grants.some(
        (g) =>
          g.apiGroups.includes(a.group) &&
          g.resources.includes(a.resource) &&
          g.verbs.includes(a.verb) &&
          (g.namespace === undefined || g.namespace === a.namespace),
      );
      if (!ok) denied.push(`${a.verb} ${a.group}/${a.resource} ${a.namespace ?? ''}`);
      return ok;
    },
  };
}

async function until(what: string, cond: () => boolean, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

function node(name: string, ip: string, boot = BOOT) {
  return {
    apiVersion: 'v1',
    kind: 'Node',
    metadata: { name },
    spec: { podCIDRs: [`10.244.${ip.split('.')[3]}.0/24`] },
    status: { addresses: [{ type: 'InternalIP', address: ip }], nodeInfo: { bootID: boot } },
  };
}

t.test('kube source: sync, publish, watch, resume', async (t) => {
  const rbac = rbacAuthorizer();
  const api = new FakeApiServer({ authorize: rbac.authorize });
  await api.start();
  t.teardown(() => api.stop());
  const kubeconfig = api.writeKubeconfig(path.join(t.testdir(), 'kubeconfig'));
  api.put('nodes', node('node-1', '198.18.0.1'));
  api.put('nodes', node('node-2', '198.18.0.2'));
  api.put('namespaces', { metadata: { name: 'default', labels: { 'istio.io/dataplane-mode': 'Kmesh' } } });
  api.put('pods', {
    metadata: { name: 'p1', namespace: 'default' },
    spec: { nodeName: 'node-1' },
    status: { podIP: '10.244.1.10' },
  });
  api.put('pods', {
    metadata: { name: 'p2', namespace: 'default' },
    spec: { nodeName: 'node-2' },
    status: { podIP: '10.244.2.10' },
  });

  const errors: string[] = [];
  const early = new KubeSource(loadKubeConfig({ kubeconfig, env: {} }).config, 'node-1');
  t.same(
    early.view(),
    { node: undefined, nodeInfos: [], pods: [], namespaces: [], problems: [], synced: false },
    'a view before start is empty and unsynced',
  );
  for (const listPageSize of [0, -5, 2.5])
    t.throws(
      () => new KubeSource(loadKubeConfig({ kubeconfig, env: {} }).config, 'node-1', { listPageSize }),
      { name: 'RangeError', message: `list page size ${listPageSize} is not >= 1` },
      `a list page size of ${listPageSize} is refused when the source is made`,
    );
  const source = new KubeSource(loadKubeConfig({ kubeconfig, env: {} }).config, 'node-1', {
    minBackoffMs: 20,
    maxBackoffMs: 200,
    onError: (m) => errors.push(m),
  });
  let changes = 0;
  await source.start(() => changes++);
  t.teardown(() => source.stop());
  await until('initial sync', () => source.view().synced);
  const v = source.view();
  t.equal(v.node?.name, 'node-1');
  t.same(v.node?.addresses, ['198.18.0.1']);
  t.equal(v.node?.bootID, BOOT);
  t.ok(v.node?.uid, 'the Node uid is known for the ownerReference');
  t.same(
    v.pods.map((p) => p.name),
    ['p1'],
    'only pods on this node',
  );
  t.ok(v.namespaces.some((n) => n.name === 'default' && n.labels['istio.io/dataplane-mode'] === 'Kmesh'));
  t.ok(changes > 0);

  // Publish our KmeshNodeInfo: created with an ownerReference to our Node, then replaced on change.
  const info = { name: 'node-1', spi: 1, addresses: ['198.18.0.1'], bootID: BOOT, podCIDRs: ['10.244.1.0/24'] };
  await source.publishNodeInfo(info);
  const stored = api.get('kmeshnodeinfos', 'kmesh-system', 'node-1') as {
    metadata: { ownerReferences: unknown[] };
    spec: unknown;
  };
  t.same(stored.spec, { spi: 1, addresses: ['198.18.0.1'], bootID: BOOT, podCIDRS: ['10.244.1.0/24'] });
  t.same(stored.metadata.ownerReferences, [{ apiVersion: 'v1', kind: 'Node', name: 'node-1', uid: v.node?.uid }]);
  const writesBefore = api.requests.filter((r) => r.method !== 'GET').length;
  await source.publishNodeInfo(info);
  t.equal(api.requests.filter((r) => r.method !== 'GET').length, writesBefore, 'unchanged spec: no write');
  await source.publishNodeInfo({ ...info, spi: 2 });
  t.equal((api.get('kmeshnodeinfos', 'kmesh-system', 'node-1') as { spec: { spi: number } }).spec.spi, 2);
  await until('own object in the view', () => source.view().nodeInfos.some((i) => i.name === 'node-1'));

  // Peers arrive and leave through the watch.
  api.put('kmeshnodeinfos', {
    apiVersion: 'kmesh.net/v1alpha1',
    kind: 'KmeshNodeInfo',
    metadata: { name: 'node-2', namespace: 'kmesh-system' },
    spec: { spi: 2, addresses: ['198.18.0.2'], bootID: BOOT, podCIDRS: ['10.244.2.0/24'] },
  });
  await until('peer seen', () => source.view().nodeInfos.some((i) => i.name === 'node-2'));
  // Nothing changed: the same view. One peer changed: a new view, in which the others' entries are the same.
  const settled = source.view();
  t.equal(source.view(), settled, 'no change: the last view again');
  const ownEntry = settled.nodeInfos.find((i) => i.name === 'node-1');
  api.put('kmeshnodeinfos', {
    apiVersion: 'kmesh.net/v1alpha1',
    kind: 'KmeshNodeInfo',
    metadata: { name: 'node-2', namespace: 'kmesh-system' },
    spec: { spi: 3, addresses: ['198.18.0.2'], bootID: BOOT, podCIDRS: ['10.244.2.0/24'] },
  });
  await until('peer change seen', () =>
    source.view().nodeInfos.some((i) => i.name === 'node-2' && (i.object as { spec: { spi: number } }).spec.spi === 3),
  );
  const changed = source.view();
  t.not(changed, settled, 'a change: a new view');
  t.equal(
    changed.nodeInfos.find((i) => i.name === 'node-1'),
    ownEntry,
    'an unchanged object keeps its entry',
  );
  t.same(
    changed.nodeInfos.map((i) => i.name),
    settled.nodeInfos.map((i) => i.name),
    'in the same order',
  );
  api.put('pods', {
    metadata: { name: 'p3', namespace: 'default' },
    spec: { nodeName: 'node-1' },
    status: { podIP: '10.244.1.11' },
  });
  await until('new pod seen', () => source.view().pods.some((p) => p.name === 'p3'));

  // An API error on the watch, a compaction, and a server restart: the source relists and catches up.
  const total = (k: 'lists' | 'resumes' | 'gone') => Object.values(source.watchStats()).reduce((a, s) => a + s[k], 0);
  const before = { lists: total('lists'), resumes: total('resumes') };
  // Ended watches resume from the last resourceVersion; compacted history (410) makes a kind relist.
  api.put('pods', {
    metadata: { name: 'p4', namespace: 'default' },
    spec: { nodeName: 'node-1' },
    status: { podIP: '10.244.1.12' },
  });
  await until('p4 seen', () => source.view().pods.some((p) => p.name === 'p4'));
  api.put('namespaces', { metadata: { name: 'extra' } });
  await until('namespace seen', () => source.view().namespaces.some((n) => n.name === 'extra'));
  api.closeWatches();
  await until('watches resumed without relisting', () => total('resumes') >= before.resumes + 4);
  t.equal(total('lists'), before.lists, 'a closed watch is resumed, not relisted');
  api.put('pods', {
    metadata: { name: 'p5', namespace: 'default' },
    spec: { nodeName: 'node-1' },
    status: { podIP: '10.244.1.13' },
  });
  api.compactHistory();
  api.put('namespaces', { metadata: { name: 'extra2' } });
  api.closeWatches();
  await until('relist after 410', () => total('gone') >= 1 && total('lists') > before.lists);
  await until('changes around the compaction seen', () => {
    const v = source.view();
    return v.pods.some((p) => p.name === 'p5') && v.namespaces.some((n) => n.name === 'extra2');
  });
  api.failNext({ method: 'GET', path: /kmeshnodeinfos/, status: 500, times: 2 });
  api.closeWatches();
  await api.stop();
  api.remove('kmeshnodeinfos', 'kmesh-system', 'node-2');
  api.put('nodes', node('node-1', '198.18.0.1', '550e8400-e29b-41d4-a716-446655449999'));
  await new Promise((r) => setTimeout(r, 100));
  await api.start();
  await until('peer deletion seen after restart', () => !source.view().nodeInfos.some((i) => i.name === 'node-2'));
  await until('new boot ID seen after restart', () => source.view().node?.bootID.endsWith('9999') === true);
  t.ok(errors.length > 0, 'watch failures were reported');
  t.ok(
    errors.every((e) => !e.includes('\n')),
    'one line each',
  );

  t.equal(await source.deleteNodeInfo(), true, 'there was one to delete');
  t.equal(api.get('kmeshnodeinfos', 'kmesh-system', 'node-1'), undefined);
  t.equal(await source.deleteNodeInfo(), false, 'absent: nothing deleted, no error');
  t.same(rbac.denied, [], 'every call the source made is allowed by deploy/rbac.yaml');
});
