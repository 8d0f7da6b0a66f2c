// The daemon's Kubernetes source against a real kube-apiserver, authorised by a ServiceAccount token whose
// only rights are deploy/rbac.yaml's: lists and watches its Node, its pods, namespaces and KmeshNodeInfo;
// publishes a schema-valid KmeshNodeInfo owned by its Node; follows peers added, changed and deleted; keeps
// up through a kube-apiserver restart and, cut off by a proxy while the cluster changes and etcd compacts,
// through 410 Gone → relist, without missing a change. The
// audit log then proves least privilege both ways: every request was allowed, and every rule rbac.yaml grants
// was used (a rule added without code that needs it fails here).
import fs from 'node:fs';
import path from 'node:path';
import { loadAllYaml } from '@kubernetes/client-node';
import t from 'tap';
import { nodeKeyStatus, nodeKeyStatusJson } from '../../src/model/node-key-status.js';
import { KUBE_SOURCE_API_CALLS, KubeSource } from '../../src/daemon/sources/kube-source.js';
import { loadKubeConfig } from '../../src/kube/client.js';
import { repoRootDir } from '../fixtures/control-plane-binaries.js';
import { controlPlaneSkip, startControlPlaneForTest, type AuditEvent } from '../fixtures/control-plane.js';
import {
  applyManifests,
  BOOT_ID,
  createNamespace,
  createNode,
  createPod,
  kmeshNodeInfo,
  NODE_INFO_PATH,
  waitFor,
} from '../fixtures/kube-cluster.js';
import { TcpCutProxy } from '../fixtures/tcp-cut-proxy.js';

const SA_USER = 'system:serviceaccount:kmesh-system:kmesh-ipsec-daemon';

interface Rule {
  apiGroups: string[];
  resources: string[];
  verbs: string[];
}

/** Every (group, resource, verb) deploy/rbac.yaml grants, as `group/resource verb` strings. */
function grantedByRbacYaml(): Set<string> {
  const docs = loadAllYaml(fs.readFileSync(path.join(repoRootDir(), 'deploy', 'rbac.yaml'), 'utf8')) as {
    kind: string;
    rules?: Rule[];
  }[];
  const out = new Set<string>();
  for (const d of docs.filter((x) => x.kind === 'ClusterRole' || x.kind === 'Role')) {
    for (const r of d.rules ?? [])
      for (const g of r.apiGroups) for (const res of r.resources) for (const v of r.verbs) out.add(`${g}/${res} ${v}`);
  }
  return out;
}

/** What the daemon's identity did, from the audit log: `group/resource verb` for each request. */
function usedBy(events: AuditEvent[], user: string): { used: Set<string>; denied: string[] } {
  const used = new Set<string>();
  const denied: string[] = [];
  for (const e of events.filter((x) => x.user.username === user && x.objectRef?.resource)) {
    const ref = e.objectRef ?? {};
    const key = `${ref.apiGroup ?? ''}/${ref.resource ?? ''}${ref.subresource ? `/${ref.subresource}` : ''} ${e.verb}`;
    if (e.responseStatus?.code === 403) denied.push(`${key} (${e.requestURI})`);
    else used.add(key);
  }
  return { used, denied };
}

/** The request URIs of the daemon's lists, in the order the audit log has them. */
function listUris(events: readonly AuditEvent[]): string[] {
  return events.filter((e) => e.user.username === SA_USER && e.verb === 'list').map((e) => e.requestURI);
}

/** The resourceVersion a list asked for; "(latest)" without one. */
function listVersion(uri: string): string {
  return new URL(uri, 'https://x').searchParams.get('resourceVersion') ?? '(latest)';
}

// A control plane starts in 5–30 s on a loaded two-core machine; every step is a real request.
t.setTimeout(600_000);
t.test('daemon Kubernetes source on a real API server, with rbac.yaml only', controlPlaneSkip(), async (t) => {
  const cp = await startControlPlaneForTest(t, { name: 'kmesh-source', audit: true });
  await applyManifests(cp);
  const node1Uid = await createNode(cp, 'node-1', '198.18.0.1', '10.244.1.0/24');
  await createNode(cp, 'node-2', '198.18.0.2', '10.244.2.0/24');
  await createNamespace(cp, 'mesh', { 'istio.io/dataplane-mode': 'Kmesh' });
  await createPod(cp, 'mesh', 'p1', 'node-1', '10.244.1.10');
  await createPod(cp, 'mesh', 'p2', 'node-2', '10.244.2.10');

  const token = await cp.serviceAccountToken('kmesh-system', 'kmesh-ipsec-daemon');
  // The source reaches the API through a proxy the test can cut.
  const proxy = await TcpCutProxy.start(cp.port);
  t.teardown(() => proxy.stop());
  const kubeconfig = cp.kubeconfigForToken(token, path.join(cp.dir, 'daemon.kubeconfig'), { server: proxy.url });
  const errors: string[] = [];
  // Pages of two objects: the relists from etcd below then take several pages for the kinds that have more.
  const source = new KubeSource(loadKubeConfig({ kubeconfig, env: {} }).config, 'node-1', {
    minBackoffMs: 50,
    maxBackoffMs: 500,
    onError: (m) => errors.push(m),
    listPageSize: 2,
  });
  await source.start(() => undefined);
  t.teardown(() => source.stop());
  await waitFor('initial sync', () => source.view().synced);
  // The first lists ask for any version: the server answers them from its watch cache, not with reads of etcd.
  await waitFor('the first lists in the audit log', () => listUris(cp.auditEvents()).length >= 4, 20_000).catch(
    () => undefined,
  );
  t.same(
    listUris(cp.auditEvents())
      .map((uri) => `${uri.split('?')[0]} ${listVersion(uri)}`)
      .sort(),
    [`/api/v1/namespaces 0`, `/api/v1/nodes 0`, `/api/v1/pods 0`, `${NODE_INFO_PATH} 0`],
    'each kind listed once, at resourceVersion=0',
  );

  const v = source.view();
  t.same(v.problems, []);
  t.equal(v.node?.name, 'node-1');
  t.equal(v.node?.uid, node1Uid);
  t.same(v.node?.addresses, ['198.18.0.1']);
  t.equal(v.node?.bootID, BOOT_ID);
  t.same(v.node?.podCIDRs, ['10.244.1.0/24']);
  t.same(
    v.pods.map((p) => `${p.namespace}/${p.name} ${p.podIPs.join(',')}`),
    ['mesh/p1 10.244.1.10'],
    'only pods on this node, with the IPs the kubelet reported',
  );
  t.ok(v.namespaces.some((n) => n.name === 'mesh' && n.labels['istio.io/dataplane-mode'] === 'Kmesh'));

  // Publish: created schema-valid with an ownerReference to the Node; an unchanged spec writes nothing.
  const info = { name: 'node-1', spi: 1, addresses: ['198.18.0.1'], bootID: BOOT_ID, podCIDRs: ['10.244.1.0/24'] };
  await source.publishNodeInfo(info);
  const stored = (await cp.call('GET', `${NODE_INFO_PATH}/node-1`)) as {
    metadata: { ownerReferences: unknown[]; resourceVersion: string };
    spec: unknown;
  };
  t.same(stored.spec, { spi: 1, addresses: ['198.18.0.1'], bootID: BOOT_ID, podCIDRS: ['10.244.1.0/24'] });
  t.same(stored.metadata.ownerReferences, [{ apiVersion: 'v1', kind: 'Node', name: 'node-1', uid: node1Uid }]);
  await source.publishNodeInfo(info);
  const again = (await cp.call('GET', `${NODE_INFO_PATH}/node-1`)) as { metadata: { resourceVersion: string } };
  t.equal(again.metadata.resourceVersion, stored.metadata.resourceVersion, 'unchanged spec: no write');
  await source.publishNodeInfo({ ...info, spi: 2 });
  t.equal(((await cp.call('GET', `${NODE_INFO_PATH}/node-1`)) as { spec: { spi: number } }).spec.spi, 2);
  await waitFor('own object in the view, as last written', () =>
    source
      .view()
      .nodeInfos.some((i) => i.name === 'node-1' && (i.object as { spec?: { spi?: number } }).spec?.spi === 2),
  );
  // The server records who set which field (managedFields); the cache drops it and keeps the rest.
  const served = (await cp.call('GET', `${NODE_INFO_PATH}/node-1`)) as { metadata: Record<string, unknown> };
  const cached = source.view().nodeInfos.find((i) => i.name === 'node-1')?.object as {
    metadata: Record<string, unknown>;
    spec: { spi: number };
  };
  t.ok(Array.isArray(served.metadata.managedFields), 'the API server sends managedFields');
  t.same(
    Object.keys(cached.metadata).sort(),
    Object.keys(served.metadata)
      .filter((k) => k !== 'managedFields')
      .sort(),
  );
  t.equal(cached.spec.spi, 2, 'the rest as served');

  // Status through the status subresource: schema-valid, the spec untouched; unchanged: no write.
  const keyStatus = nodeKeyStatus({
    heldSpis: [1, 2],
    sendSpis: [2],
    keyProblem: '',
    lastRotation: { spi: 2, seenAt: '2026-01-02T03:04:05.000Z', convergedAt: '2026-01-02T03:04:06.000Z' },
    peerCount: 12,
    failingPeers: Array.from({ length: 12 }, (_, i) => ({ name: `peer-${i}`, reason: 'no inbound SA yet' })),
  });
  await source.publishNodeStatus(keyStatus);
  const withStatus = (await cp.call('GET', `${NODE_INFO_PATH}/node-1`)) as {
    spec: { spi: number };
    status: unknown;
    metadata: { resourceVersion: string };
  };
  t.same(withStatus.status, nodeKeyStatusJson(keyStatus), 'status stored as published (8 of 12 failing peers named)');
  t.equal(withStatus.spec.spi, 2, 'spec untouched');
  await source.publishNodeStatus(keyStatus);
  t.equal(
    ((await cp.call('GET', `${NODE_INFO_PATH}/node-1`)) as { metadata: { resourceVersion: string } }).metadata
      .resourceVersion,
    withStatus.metadata.resourceVersion,
    'unchanged status: no write',
  );
  await source.publishNodeInfo({ ...info, spi: 3 });
  t.same(
    ((await cp.call('GET', `${NODE_INFO_PATH}/node-1`)) as { status: unknown }).status,
    nodeKeyStatusJson(keyStatus),
    'a spec write keeps the status',
  );
  const tooMany = {
    ...withStatus,
    metadata: { name: 'node-1', namespace: 'kmesh-system' },
    status: {
      ...nodeKeyStatusJson(keyStatus),
      failingPeers: Array.from({ length: 9 }, () => ({ name: 'x', reason: 'y' })),
    },
  };
  t.equal((await cp.request('PUT', `${NODE_INFO_PATH}/node-1/status`, tooMany)).status, 422, 'the CRD bounds the list');
  const badSpi = { ...tooMany, status: { ...nodeKeyStatusJson(keyStatus), heldSpis: [0] } };
  t.equal((await cp.request('PUT', `${NODE_INFO_PATH}/node-1/status`, badSpi)).status, 422, 'and the SPI range');

  // Peers added, changed and deleted through the watch.
  const peerSpi = () =>
    (source.view().nodeInfos.find((i) => i.name === 'node-2')?.object as { spec?: { spi?: number } } | undefined)?.spec
      ?.spi;
  await cp.call('POST', NODE_INFO_PATH, kmeshNodeInfo('node-2', 1));
  await waitFor('peer added', () => peerSpi() === 1);
  const peer = (await cp.call('GET', `${NODE_INFO_PATH}/node-2`)) as Record<string, unknown>;
  await cp.call('PUT', `${NODE_INFO_PATH}/node-2`, { ...peer, spec: { ...(peer.spec as object), spi: 2 } });
  await waitFor('peer changed', () => peerSpi() === 2);
  await cp.call('DELETE', `${NODE_INFO_PATH}/node-2`);
  await waitFor('peer deleted', () => peerSpi() === undefined);
  await createPod(cp, 'mesh', 'p3', 'node-1', '10.244.1.11');
  await waitFor('new pod seen', () => source.view().pods.some((p) => p.name === 'p3'));

  const total = (k: 'lists' | 'resumes' | 'gone'): number =>
    Object.values(source.watchStats()).reduce((a, s) => a + s[k], 0);

  // Requests before the first restart: none may be refused. (Right after a restart the RBAC authorizer's
  // caches are still filling and a real server refuses briefly: those must be retried, not counted.)
  let eventsBeforeRestart = 0;

  t.test('kube-apiserver restart: watches resume, nothing missed', async (t) => {
    eventsBeforeRestart = cp.auditEvents().length;
    const resumes = total('resumes');
    // The restarted server runs without its watch cache: watches then read etcd, whose compaction below
    // refuses old versions whatever an in-memory window would still hold.
    await cp.restartApiserver(['--watch-cache=false']);
    await cp.call('POST', NODE_INFO_PATH, kmeshNodeInfo('node-3', 5));
    await createPod(cp, 'mesh', 'p4', 'node-1', '10.244.1.12');
    await waitFor('changes after the restart seen', () => {
      const view = source.view();
      return view.nodeInfos.some((i) => i.name === 'node-3') && view.pods.some((p) => p.name === 'p4');
    });
    t.comment(`watch stats: ${JSON.stringify(source.watchStats())}`);
    t.ok(total('resumes') > resumes, 'the ended watches were resumed');
    t.same(source.view().problems, []);
  });

  t.test('cut off while the cluster changes and etcd compacts: 410 Gone, relist, nothing missed', async (t) => {
    // Settled first: every kind watching (not in a backoff after the restart's warm-up refusals).
    await waitFor('every kind watching', () => Object.values(source.watchStats()).every((w) => w.watching), 60_000);
    const lists = total('lists');
    const gone = total('gone');
    const listsLogged = listUris(cp.auditEvents()).length;
    proxy.cut();
    await cp.call('DELETE', `${NODE_INFO_PATH}/node-3`);
    await createPod(cp, 'mesh', 'p5', 'node-1', '10.244.1.13');
    await createNamespace(cp, 'while-cut');
    await cp.compactEtcd();
    proxy.restore();
    await waitFor(
      'every change seen',
      () => {
        const view = source.view();
        return (
          !view.nodeInfos.some((i) => i.name === 'node-3') &&
          view.pods.some((p) => p.name === 'p5') &&
          view.namespaces.some((n) => n.name === 'while-cut')
        );
      },
      60_000,
    );
    // A kind with no change of its own (nodes) may still be in its reconnect backoff: wait for every kind's
    // resume (told 410, relisted, watching again) before counting.
    await waitFor(
      'every kind told 410 and watching again',
      () =>
        total('gone') - gone >= 4 &&
        total('lists') - lists >= 4 &&
        Object.values(source.watchStats()).every((w) => w.watching),
      60_000,
    ).catch(() => undefined); // the assertions below say what is missing
    t.comment(`watch stats: ${JSON.stringify(source.watchStats())}`);
    t.equal(total('gone') - gone, 4, 'every kind resumed from a compacted version and was told 410');
    t.equal(total('lists') - lists, 4, 'and each relisted once');
    const namespaces = (
      (await cp.call('GET', '/api/v1/namespaces')) as { items: { metadata: { name: string } }[] }
    ).items
      .map((n) => n.metadata.name)
      .sort();
    const relistUrls = (): URL[] =>
      listUris(cp.auditEvents())
        .slice(listsLogged)
        .map((uri) => new URL(uri, 'https://x'));
    await waitFor(
      'the relists in the audit log, every page of the namespaces among them',
      () => {
        const urls = relistUrls();
        return (
          urls.filter((u) => !u.searchParams.has('continue')).length >= 4 &&
          urls.filter((u) => u.pathname === '/api/v1/namespaces').length >= Math.ceil(namespaces.length / 2)
        );
      },
      20_000,
    ).catch(() => undefined);
    // Each relist reads the latest version (no resourceVersion) from etcd, in pages of two: a first page per kind,
    // then one page per continue token the server handed out.
    const relists = relistUrls();
    t.same(
      relists
        .filter((u) => !u.searchParams.has('continue'))
        .map((u) => `${u.pathname} ${listVersion(u.href)}`)
        .sort(),
      [`/api/v1/namespaces (latest)`, `/api/v1/nodes (latest)`, `/api/v1/pods (latest)`, `${NODE_INFO_PATH} (latest)`],
      'told 410, each kind relisted the latest version (no resourceVersion), once',
    );
    t.ok(
      relists.every((u) => u.searchParams.get('limit') === '2' && !u.searchParams.has('resourceVersion')),
      'every page asked for two objects, none for a version',
    );
    t.ok(namespaces.length > 2, `more namespaces than a page holds (${namespaces.length})`);
    t.equal(
      relists.filter((u) => u.pathname === '/api/v1/namespaces').length,
      Math.ceil(namespaces.length / 2),
      'the namespaces read in as many pages as they fill',
    );
    t.same(
      source
        .view()
        .namespaces.map((n) => n.name)
        .sort(),
      namespaces,
      'and the cache holds every namespace the server has',
    );
    t.same(source.view().problems, []);
  });

  t.test('least privilege: what the daemon did equals what rbac.yaml grants', async (t) => {
    await source.deleteNodeInfo();
    t.equal((await cp.request('GET', `${NODE_INFO_PATH}/node-1`)).status, 404, 'deleted');
    // The server logs a watch when it ends: stop the source, then wait for its last requests to be logged.
    await source.stop();
    const granted = grantedByRbacYaml();
    await waitFor(
      'the audit log to hold every request of the source',
      () => {
        const { used } = usedBy(cp.auditEvents(), SA_USER);
        return [...granted].every((g) => used.has(g));
      },
      20_000,
    ).catch(() => undefined); // the assertions below say what is missing
    const events = cp.auditEvents();
    t.same(usedBy(events.slice(0, eventsBeforeRestart), SA_USER).denied, [], 'no request was refused');
    const { used, denied } = usedBy(events, SA_USER);
    const unrecovered = denied.filter((d) => !used.has(d.split(' (')[0] ?? ''));
    t.same(unrecovered, [], 'requests refused while a restarted server warmed up later succeeded');
    t.same([...used].filter((u) => !granted.has(u)).sort(), [], 'every verb used is granted');
    t.same([...granted].filter((g) => !used.has(g)).sort(), [], 'every granted verb is used');
    const declared = new Set(
      KUBE_SOURCE_API_CALLS.flatMap((c) => c.verbs.map((verb) => `${c.group}/${c.resource} ${verb}`)),
    );
    t.same([...declared].sort(), [...granted].sort(), 'KUBE_SOURCE_API_CALLS matches rbac.yaml');
    t.ok(
      errors.every((e) => !e.includes('\n')),
      'watch problems were one line each',
    );
  });
});
