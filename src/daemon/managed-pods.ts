// Which pods on this node Kmesh manages (pure). A pod is managed when it or its namespace carries
// istio.io/dataplane-mode=Kmesh; a pod label istio.io/dataplane-mode=none opts a pod out of a managed
// namespace. Host-network pods (no veth of their own), finished pods and pods without an IP are left out.
import { DATAPLANE_MODE_KMESH, DATAPLANE_MODE_LABEL } from './config.js';
import type { NamespaceFacts, PodFacts } from './sources/source.js';

export interface ManagedPod {
  namespace: string;
  name: string;
  podIPs: string[];
}

export function isPodManaged(pod: PodFacts, namespaceLabels: Record<string, string> | undefined): boolean {
  const podMode = pod.labels[DATAPLANE_MODE_LABEL];
  if (podMode === 'none') return false;
  if (podMode === DATAPLANE_MODE_KMESH) return true;
  return namespaceLabels?.[DATAPLANE_MODE_LABEL] === DATAPLANE_MODE_KMESH;
}

export function managedPods(
  pods: readonly PodFacts[],
  namespaces: readonly NamespaceFacts[],
  nodeName: string,
): ManagedPod[] {
  const nsLabels = new Map(namespaces.map((n) => [n.name, n.labels]));
  return pods
    .filter((p) => p.nodeName === nodeName && !p.hostNetwork && !p.finished && p.podIPs.length > 0)
    .filter((p) => isPodManaged(p, nsLabels.get(p.namespace)))
    .map((p) => ({ namespace: p.namespace, name: p.name, podIPs: [...p.podIPs] }))
    .sort((a, b) => `${a.namespace}/${a.name}`.localeCompare(`${b.namespace}/${b.name}`));
}
