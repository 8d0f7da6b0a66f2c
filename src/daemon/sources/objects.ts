// Pure conversions between Kubernetes-shaped JSON objects (as the API server or the directory store holds
// them) and the facts the daemon uses, plus the KmeshNodeInfo object this node publishes (kmesh.net/v1alpha1 in
// kmesh-system, named after the node, spec {spi, addresses, bootID, podCIDRS}).
import type { NodeInfo } from '../../model/node.js';
import { KMESH_NAMESPACE, KMESH_NODE_INFO } from '../../model/kmesh-names.js';
import type { NamespaceFacts, NodeFacts, PodFacts } from './source.js';

type Json = Record<string, unknown>;

function isObject(v: unknown): v is Json {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function field(obj: unknown, ...keys: string[]): unknown {
  let cur: unknown = obj;
  for (const k of keys) {
    if (!isObject(cur)) return undefined;
    cur = cur[k];
  }
  return cur;
}

function str(v: unknown): string | undefined {
  return typeof v === 'string' ? v : undefined;
}

function strings(v: unknown): string[] {
  return Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string') : [];
}

function labels(obj: unknown): Record<string, string> {
  const raw = field(obj, 'metadata', 'labels');
  const out: Record<string, string> = {};
  if (isObject(raw)) for (const [k, v] of Object.entries(raw)) if (typeof v === 'string') out[k] = v;
  return out;
}

export function objectName(obj: unknown): string | undefined {
  return str(field(obj, 'metadata', 'name'));
}

export function objectNamespace(obj: unknown): string | undefined {
  return str(field(obj, 'metadata', 'namespace'));
}

/** The Node object's facts; throws a one-line Error naming what is missing. */
export function nodeFacts(obj: unknown): NodeFacts {
  const name = objectName(obj);
  if (name === undefined) throw new Error('Node object has no metadata.name');
  const addrs = field(obj, 'status', 'addresses');
  const addresses = Array.isArray(addrs)
    ? addrs
        .filter((a) => isObject(a) && a.type === 'InternalIP' && typeof a.address === 'string')
        .map((a) => (a as { address: string }).address)
    : [];
  const bootID = str(field(obj, 'status', 'nodeInfo', 'bootID')) ?? '';
  const cidrs = strings(field(obj, 'spec', 'podCIDRs'));
  const single = str(field(obj, 'spec', 'podCIDR'));
  const podCIDRs = cidrs.length > 0 ? cidrs : single !== undefined ? [single] : [];
  return { name, uid: str(field(obj, 'metadata', 'uid')) ?? '', addresses, bootID, podCIDRs };
}

/** What is missing from this node's facts before we can publish a KmeshNodeInfo for it ('' = nothing). */
export function nodeFactsGap(node: NodeFacts): string {
  const gaps: string[] = [];
  if (node.addresses.length === 0) gaps.push('no InternalIP in status.addresses');
  if (node.bootID === '') gaps.push('no status.nodeInfo.bootID');
  if (node.podCIDRs.length === 0) gaps.push('no spec.podCIDRs');
  return gaps.join(', ');
}

export function podFacts(obj: unknown): PodFacts {
  const name = objectName(obj);
  const namespace = objectNamespace(obj);
  if (name === undefined || namespace === undefined) throw new Error('Pod object lacks metadata.name/namespace');
  const ips = field(obj, 'status', 'podIPs');
  let podIPs = Array.isArray(ips) ? ips.map((i) => str(field(i, 'ip'))).filter((i): i is string => !!i) : [];
  const single = str(field(obj, 'status', 'podIP'));
  if (podIPs.length === 0 && single !== undefined && single !== '') podIPs = [single];
  const phase = str(field(obj, 'status', 'phase'));
  return {
    namespace,
    name,
    nodeName: str(field(obj, 'spec', 'nodeName')) ?? '',
    podIPs,
    labels: labels(obj),
    hostNetwork: field(obj, 'spec', 'hostNetwork') === true,
    finished: phase === 'Succeeded' || phase === 'Failed' || field(obj, 'metadata', 'deletionTimestamp') != null,
  };
}

export function namespaceFacts(obj: unknown): NamespaceFacts {
  const name = objectName(obj);
  if (name === undefined) throw new Error('Namespace object has no metadata.name');
  return { name, labels: labels(obj) };
}

/** The KmeshNodeInfo spec exactly as Kmesh writes it (note `podCIDRS`). */
export function nodeInfoSpec(info: NodeInfo): Json {
  return { spi: info.spi, addresses: [...info.addresses], bootID: info.bootID, podCIDRS: [...info.podCIDRs] };
}

/** The full object this node publishes; owned by its Node so Kubernetes garbage-collects it with the node. */
export function nodeInfoObject(info: NodeInfo, nodeUid: string): Json {
  const metadata: Json = { name: info.name, namespace: KMESH_NAMESPACE };
  if (nodeUid !== '') {
    metadata.ownerReferences = [{ apiVersion: 'v1', kind: 'Node', name: info.name, uid: nodeUid }];
  }
  return {
    apiVersion: KMESH_NODE_INFO.apiVersion,
    kind: KMESH_NODE_INFO.kind,
    metadata,
    spec: nodeInfoSpec(info),
  };
}

/** True when `published` already carries `info`'s spec (so no write is needed). */
export function nodeInfoUpToDate(published: unknown, info: NodeInfo): boolean {
  return JSON.stringify(field(published, 'spec')) === JSON.stringify(nodeInfoSpec(info));
}
