// The one interface between the daemon and wherever cluster objects live (the Kubernetes API or a local
// directory). A source keeps a current view (this node, every KmeshNodeInfo, this node's pods, namespaces)
// and calls `onChange` whenever that view may have changed; the reconcile loop then reads `view()` again —
// level-triggered, so a coalesced or repeated notification is harmless and none carries data.
import type { NodeInfo } from '../../model/node.js';
import type { NodeKeyStatus } from '../../model/node-key-status.js';

/**
 * What this node's own Node object says: status.addresses of type InternalIP, status.nodeInfo.bootID and
 * spec.podCIDRs (the values its KmeshNodeInfo publishes).
 */
export interface NodeFacts {
  name: string;
  /** Node UID, for the ownerReference of our KmeshNodeInfo ('' when the store has none). */
  uid: string;
  addresses: string[];
  bootID: string;
  podCIDRs: string[];
}

export interface PodFacts {
  namespace: string;
  name: string;
  nodeName: string;
  podIPs: string[];
  labels: Record<string, string>;
  hostNetwork: boolean;
  /** Succeeded/Failed pods or pods being deleted no longer carry traffic worth encrypting. */
  finished: boolean;
}

export interface NamespaceFacts {
  name: string;
  labels: Record<string, string>;
}

/** A KmeshNodeInfo object as stored, not yet validated (parseNodeInfo does that). */
export interface RawNodeInfo {
  /** metadata.name, or the file name when metadata is missing. */
  name: string;
  object: unknown;
}

export interface ClusterView {
  /** This node; undefined until the source has seen its Node object. */
  node: NodeFacts | undefined;
  nodeInfos: RawNodeInfo[];
  /** Pods scheduled on this node. */
  pods: PodFacts[];
  namespaces: NamespaceFacts[];
  /** Objects the source could not read (one line each); they are skipped, never fatal. */
  problems: string[];
  /** False until the first complete listing of every kind has arrived. */
  synced: boolean;
}

export interface ClusterSource {
  /** Human-readable name for logs, e.g. "kubernetes" or "dir:/var/lib/kmesh-store". */
  readonly description: string;
  /** Starts watching; `onChange` is called after every change (and after the initial sync). */
  start(onChange: () => void): Promise<void>;
  view(): ClusterView;
  /** Creates or replaces this node's KmeshNodeInfo (spec from `info`, owned by the Node object). */
  publishNodeInfo(info: NodeInfo): Promise<void>;
  /**
   * Writes the status of this node's KmeshNodeInfo (the status subresource; the spec is untouched). Does nothing
   * when the object does not exist yet or already carries this status.
   */
  publishNodeStatus(status: NodeKeyStatus): Promise<void>;
  /** Removes this node's KmeshNodeInfo; absent is fine. True if there was one to remove. */
  deleteNodeInfo(): Promise<boolean>;
  stop(): Promise<void>;
}
