// The names Kmesh, its users and this project share, in one place: the namespace, the IPsec Secret and its
// data key, the KmeshNodeInfo custom resource's coordinates, and the directory store's layout derived from
// them (the same paths the kubelet projects for the daemon). The CLI, the daemon and both stores import these.

/** Namespace of the IPsec Secret and of the KmeshNodeInfo objects. */
export const KMESH_NAMESPACE = 'kmesh-system';

/** Name of the IPsec Secret (and of its directory in the dir store and in the daemon's mount). */
export const IPSEC_SECRET_NAME = 'kmesh-ipsec';
/** The Secret's data key, and the file name the daemon reads. */
export const IPSEC_SECRET_DATA_KEY = 'ipSec';

/** The KmeshNodeInfo custom resource: namespaced, one per node, named after the node. */
export const KMESH_NODE_INFO = {
  group: 'kmesh.net',
  version: 'v1alpha1',
  apiVersion: 'kmesh.net/v1alpha1',
  kind: 'KmeshNodeInfo',
  plural: 'kmeshnodeinfos',
} as const;

/** Where the daemon reads the key by default: the Secret projected by the DaemonSet at /kmesh. */
export const DEFAULT_IPSEC_KEY_FILE = `/kmesh/${IPSEC_SECRET_NAME}/${IPSEC_SECRET_DATA_KEY}`;

/** The key file of the directory store rooted at `root` (what `--store dir:ROOT` writes and reads). */
export function dirStoreKeyFile(root: string): string {
  return `${root.replace(/\/+$/, '')}/${IPSEC_SECRET_NAME}/${IPSEC_SECRET_DATA_KEY}`;
}

/** Directory (under the dir store's root) of the KmeshNodeInfo objects, one `<node>.json` each. */
export const DIR_STORE_NODE_INFOS = KMESH_NODE_INFO.plural;
