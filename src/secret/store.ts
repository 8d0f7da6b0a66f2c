// Where the IPsec Secret lives: the port the kmeshctl secret commands talk to. Two adapters implement it, the
// Kubernetes API (store-kubernetes.ts) and a local directory with the daemon's file layout (store-dir.ts).
// Writes are optimistic: `replace` succeeds only if the Secret still has the version that was read.

/** The Secret as read from a store. */
export interface StoredSecret {
  name: string;
  namespace: string;
  /** The `ipSec` JSON text, or undefined if the Secret exists but lacks that data key. */
  payload: string | undefined;
  /** Opaque version for optimistic concurrency (resourceVersion, or a content hash in the dir store). */
  version: string;
  /** When the Secret was first created (kept across rotations), if the store knows. */
  creationTime: Date | undefined;
}

/** Someone else changed (or created, or deleted) the Secret between our read and our write: read again and retry. */
export class StoreConflictError extends Error {
  override readonly name = 'StoreConflictError';
}

/** The store could not do what was asked; the message is one line saying what is wrong and what to do. */
export class StoreError extends Error {
  override readonly name = 'StoreError';
}

/** How fresh a read of the KmeshNodeInfo objects must be (SecretStore.nodeInfoObjects). */
export type NodeInfoRead = 'latest' | 'cached';

export interface SecretStore {
  /** Human name of the place, e.g. `Secret kmesh-system/kmesh-ipsec` or `/srv/kmesh/kmesh-ipsec/ipSec`. */
  readonly location: string;
  /** The current Secret, or undefined if there is none. */
  read(): Promise<StoredSecret | undefined>;
  /** Creates the Secret; StoreConflictError if it already exists. */
  create(payload: string): Promise<StoredSecret>;
  /** Replaces `current`'s payload; StoreConflictError if the Secret changed or vanished since it was read. */
  replace(current: StoredSecret, payload: string): Promise<StoredSecret>;
  /** Deletes the Secret; false if there was nothing to delete. */
  delete(): Promise<boolean>;
  /** SPIs advertised by the KmeshNodeInfo objects in the namespace (invalid objects are skipped). */
  advertisedSpis(): Promise<number[]>;
  /**
   * The KmeshNodeInfo objects in the namespace as stored (unreadable files are skipped); [] when there are none.
   * `latest` (the default) reads the latest version; `cached` may be a little behind and costs the store less (the
   * Kubernetes store reads the API server's watch cache instead of etcd; the directory store reads its files
   * either way): for polls that another read confirms.
   */
  nodeInfoObjects(read?: NodeInfoRead): Promise<unknown[]>;
}
