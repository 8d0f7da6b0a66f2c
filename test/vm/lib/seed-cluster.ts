// Writes a simulated cluster's objects into a store, as the VM suites start their clusters: every node and its
// pods, the namespace "default" labelled for Kmesh (istio.io/dataplane-mode=Kmesh), then any other namespaces
// named, unlabelled.
import type { ClusterStore } from '../../../src/demo/cluster-store.js';
import type { NetnsCluster } from '../../../src/demo/netns-cluster.js';

export async function seedCluster(
  store: ClusterStore,
  cluster: NetnsCluster,
  unlabelled: readonly string[] = [],
): Promise<void> {
  for (const n of cluster.nodes) {
    await store.put('nodes', cluster.nodeObject(n));
    for (const p of n.pods) await store.put('pods', cluster.podObject(n, p));
  }
  await store.put('namespaces', {
    apiVersion: 'v1',
    kind: 'Namespace',
    metadata: { name: 'default', labels: { 'istio.io/dataplane-mode': 'Kmesh' } },
  });
  for (const name of unlabelled)
    await store.put('namespaces', { apiVersion: 'v1', kind: 'Namespace', metadata: { name } });
}
