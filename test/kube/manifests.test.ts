// deploy/ against a real kube-apiserver: the CRD and RBAC apply with kubectl, the CRD's schema accepts what
// the daemon publishes and refuses malformed objects (422), and the DaemonSet passes server-side validation
// (`kubectl apply --dry-run=server`) and refers only to what rbac.yaml creates.
import t from 'tap';
import { nodeInfoObject } from '../../src/daemon/sources/objects.js';
import { controlPlaneSkip, startControlPlaneForTest } from '../fixtures/control-plane.js';
import { applyManifests, kmeshNodeInfo, kubectl, manifest, NODE_INFO_PATH } from '../fixtures/kube-cluster.js';

// A control plane starts in 5–30 s on a loaded two-core machine; every step is a real request.
t.setTimeout(600_000);
t.test('deploy manifests on a real API server', controlPlaneSkip(), async (t) => {
  const cp = await startControlPlaneForTest(t, { name: 'kmesh-manifests' });
  t.comment(`kube-apiserver ${cp.binaries.kubeVersion} from ${cp.binaries.source}`);
  await applyManifests(cp);

  t.test('applying again changes nothing', async (t) => {
    const again = await kubectl(cp.kubeconfig, ['apply', '-f', manifest('crd'), '-f', manifest('rbac')]);
    t.equal(again.code, 0, again.stderr);
    t.notMatch(again.stdout, /configured|created/, 'every object unchanged');
  });

  t.test('the object the daemon publishes is schema-valid', async (t) => {
    const obj = nodeInfoObject(
      { name: 'node-a', spi: 3, addresses: ['198.18.0.1', 'fd00::1'], bootID: 'b', podCIDRs: ['10.244.1.0/24'] },
      '',
    );
    const res = await cp.request('POST', NODE_INFO_PATH, obj);
    t.equal(res.status, 201, 'created (201)', { body: res.body });
    const got = (await cp.call('GET', `${NODE_INFO_PATH}/node-a`)) as { spec: unknown };
    t.same(got.spec, obj.spec, 'stored as sent (no field pruned)');
  });

  t.test('the schema refuses malformed KmeshNodeInfo objects with 422', async (t) => {
    const bad: [string, unknown][] = [
      ['spi as a string', kmeshNodeInfo('bad-1', 'seven')],
      ['addresses not an array', kmeshNodeInfo('bad-2', 1, { addresses: '198.18.0.1' })],
      ['spec without podCIDRS', { ...kmeshNodeInfo('bad-3', 1), spec: { spi: 1, addresses: [], bootID: 'x' } }],
    ];
    for (const [what, obj] of bad) {
      const res = await cp.request('POST', NODE_INFO_PATH, obj);
      t.equal(res.status, 422, what);
      t.match(JSON.stringify(res.body), /Invalid|invalid|Required/, `${what}: says why`);
    }
  });

  t.test('the DaemonSet passes server-side validation', async (t) => {
    const dry = await kubectl(cp.kubeconfig, ['apply', '--dry-run=server', '-f', manifest('daemonset')]);
    t.equal(dry.code, 0, dry.stderr);
    t.match(dry.stdout, /daemonset.apps\/kmesh-ipsec-daemon (created|configured) \(server dry run\)/);
    const sa = await kubectl(cp.kubeconfig, ['get', 'serviceaccount', '-n', 'kmesh-system', 'kmesh-ipsec-daemon']);
    t.equal(sa.code, 0, 'the ServiceAccount it runs as exists (from rbac.yaml)');
  });
});
