// ClusterSource over the Kubernetes API: watches this node's Node object, the KmeshNodeInfo objects in
// kmesh-system, the pods scheduled on this node and all namespaces (list + watch each, restarted after any
// API error or server restart), and publishes this node's KmeshNodeInfo with an ownerReference to the Node
// so the object is garbage-collected with the node. API calls made here are exactly what deploy/rbac.yaml
// grants (KUBE_SOURCE_API_CALLS lists them for the manifest tests). Requests and watches go through the small
// HTTPS client (kube/rest.ts, kube/watch.ts) with @kubernetes/client-node's KubeConfig for connection and
// credentials: the generated APIs took over a second to load, most of the daemon's start-to-synced time.
import type { KubeConfig } from '@kubernetes/client-node/dist/config.js';
import { kubeErrorStatus } from '../../kube/errors.js';
import { checkListPageSize, DEFAULT_LIST_PAGE_SIZE, listedObjects, listInPages } from '../../kube/list-pages.js';
import { KubeRestClient, withQuery } from '../../kube/rest.js';
import { watch } from '../../kube/watch.js';
import type { NodeInfo } from '../../model/node.js';
import { KMESH_NAMESPACE, KMESH_NODE_INFO } from '../../model/kmesh-names.js';
import { nodeKeyStatusJson, nodeKeyStatusUpToDate, type NodeKeyStatus } from '../../model/node-key-status.js';
import {
  namespaceFacts,
  nodeFacts,
  nodeInfoObject,
  nodeInfoUpToDate,
  objectName,
  objectNamespace,
  podFacts,
} from './objects.js';
import { errorText, Reflector, type ReflectorOps, type WatchEvent } from './reflector.js';
import type { ClusterSource, ClusterView, NamespaceFacts, PodFacts, RawNodeInfo } from './source.js';

/** Every (apiGroup, resource, verb) this source uses; deploy/rbac.yaml must grant these and nothing more. */
export const KUBE_SOURCE_API_CALLS: readonly { group: string; resource: string; verbs: readonly string[] }[] = [
  { group: '', resource: 'nodes', verbs: ['list', 'watch'] },
  { group: '', resource: 'pods', verbs: ['list', 'watch'] },
  { group: '', resource: 'namespaces', verbs: ['list', 'watch'] },
  {
    group: KMESH_NODE_INFO.group,
    resource: KMESH_NODE_INFO.plural,
    verbs: ['get', 'list', 'watch', 'create', 'update', 'delete'],
  },
  { group: KMESH_NODE_INFO.group, resource: `${KMESH_NODE_INFO.plural}/status`, verbs: ['update'] },
];

/** Seconds after which the server ends a watch (we then resume it): bounds how stale a silent connection can get. */
const WATCH_TIMEOUT_SECONDS = 300;
/** Deadline of a list or a write (429/503 answers are retried within it; the reflector retries the rest). */
const REQUEST_TIMEOUT_MS = 60_000;

const NODE_INFOS_PATH = `/apis/${KMESH_NODE_INFO.group}/${KMESH_NODE_INFO.version}/namespaces/${KMESH_NAMESPACE}/${KMESH_NODE_INFO.plural}`;

function metaKey(obj: unknown): string | undefined {
  const name = objectName(obj);
  if (name === undefined) return undefined;
  const ns = objectNamespace(obj);
  return ns === undefined ? name : `${ns}/${name}`;
}

/**
 * The object without metadata.managedFields (server-side apply's record of who set which field), which nothing
 * here reads: on a real API server it is most of a KmeshNodeInfo's metadata, kept for each of 5,000 peers. The
 * object as parsed is ours; its metadata is replaced by a copy without the field (deleting it in place could
 * leave the metadata a slower, larger dictionary object). Writes never send a cached object back.
 */
function withoutManagedFields(obj: unknown): unknown {
  const o = obj as { metadata?: unknown } | null;
  const metadata = o?.metadata;
  if (typeof metadata !== 'object' || metadata === null || !('managedFields' in metadata)) return obj;
  const rest: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(metadata)) if (k !== 'managedFields') rest[k] = v;
  (o as { metadata: object }).metadata = rest;
  return obj;
}

export interface KubeSourceOptions {
  minBackoffMs?: number;
  maxBackoffMs?: number;
  onError?: (message: string) => void;
  /** Objects per page of a list read from etcd (default 500, client-go's). */
  listPageSize?: number;
}

export class KubeSource implements ClusterSource {
  readonly description = 'kubernetes';
  private readonly api: KubeRestClient;
  private readonly reflectors: Reflector[] = [];
  private nodeR!: Reflector;
  private infoR!: Reflector;
  private podR!: Reflector;
  private nsR!: Reflector;
  /** The last view, and the reflectors' change counts it was built at. */
  private lastView: { changes: number[]; view: ClusterView } | undefined;
  /** Each cached KmeshNodeInfo object's entry in the views (kept while the object is cached). */
  private readonly infoEntries = new WeakMap<object, RawNodeInfo>();
  private readonly listPageSize: number;

  constructor(
    kc: KubeConfig,
    private readonly nodeName: string,
    private readonly options: KubeSourceOptions = {},
  ) {
    const server = kc.getCurrentCluster()?.server;
    if (!server) throw new Error('the kubeconfig names no API server for its current context');
    this.api = new KubeRestClient({ config: kc, server, timeoutMs: REQUEST_TIMEOUT_MS });
    this.listPageSize = options.listPageSize ?? DEFAULT_LIST_PAGE_SIZE;
    checkListPageSize(this.listPageSize); // here, not at the first relist from etcd (after a 410, in a retry loop)
  }

  private watchOps(path: string, query: Record<string, string>, keep?: (obj: unknown) => boolean): ReflectorOps {
    return {
      // A list of the latest version is a read of etcd: in pages (kube/list-pages.ts). A list at a version is
      // answered from the server's watch cache, which ignores a limit (client-go pages neither).
      list: async (resourceVersion) =>
        resourceVersion === ''
          ? listInPages((q) => this.api.request('GET', withQuery(path, q)), query, this.listPageSize)
          : listedObjects(await this.api.request('GET', withQuery(path, { ...query, resourceVersion }))),
      watch: (resourceVersion, onEvent: (e: WatchEvent) => void, onDone) =>
        watch(
          this.api,
          path,
          { ...query, resourceVersion, allowWatchBookmarks: true, timeoutSeconds: WATCH_TIMEOUT_SECONDS },
          (type, object) => onEvent({ type, object }),
          onDone,
        ),
      key: metaKey,
      trim: withoutManagedFields,
      ...(keep ? { keep } : {}),
    };
  }

  start(onChange: () => void): Promise<void> {
    const nodeSelector = `metadata.name=${this.nodeName}`;
    const podSelector = `spec.nodeName=${this.nodeName}`;
    const opts = {
      ...(this.options.minBackoffMs !== undefined ? { minBackoffMs: this.options.minBackoffMs } : {}),
      ...(this.options.maxBackoffMs !== undefined ? { maxBackoffMs: this.options.maxBackoffMs } : {}),
      ...(this.options.onError ? { onError: this.options.onError } : {}),
    };
    this.nodeR = new Reflector(
      'nodes',
      this.watchOps('/api/v1/nodes', { fieldSelector: nodeSelector }, (o) => objectName(o) === this.nodeName),
      onChange,
      opts,
    );
    this.infoR = new Reflector('kmeshnodeinfos', this.watchOps(NODE_INFOS_PATH, {}), onChange, opts);
    this.podR = new Reflector(
      'pods',
      this.watchOps(
        '/api/v1/pods',
        { fieldSelector: podSelector },
        (o) => (o as { spec?: { nodeName?: string } }).spec?.nodeName === this.nodeName,
      ),
      onChange,
      opts,
    );
    this.nsR = new Reflector('namespaces', this.watchOps('/api/v1/namespaces', {}), onChange, opts);
    this.reflectors.push(this.nodeR, this.infoR, this.podR, this.nsR);
    for (const r of this.reflectors) r.start();
    return Promise.resolve();
  }

  /** How many times each kind has been listed (the first list, then a relist after each 410 or API error). */
  listCounts(): Record<string, number> {
    return Object.fromEntries(this.reflectors.map((r) => [r.name, r.listCount]));
  }

  /**
   * Per kind: lists, watches resumed from the last resourceVersion, watches refused as too old (410), and
   * whether a watch is open right now.
   */
  watchStats(): Record<string, { lists: number; resumes: number; gone: number; watching: boolean }> {
    return Object.fromEntries(
      this.reflectors.map((r) => [
        r.name,
        { lists: r.listCount, resumes: r.resumeCount, gone: r.goneCount, watching: r.watching },
      ]),
    );
  }

  /**
   * The cluster as the caches hold it. Built again only when a cache changed since the last view (the loop asks at
   * every step, the 30 s resync included), and a KmeshNodeInfo object keeps its entry while it is the same object:
   * at 5,000 peers a view built afresh was 5,000 entries and three lists of garbage per step, and the directory
   * source already hands out its last view while nothing changed. Views are read, never written to.
   */
  view(): ClusterView {
    if (this.reflectors.length === 0) {
      // Not started yet (the key-file watcher may trigger a step first): nothing listed.
      return { node: undefined, nodeInfos: [], pods: [], namespaces: [], problems: [], synced: false };
    }
    const changes = this.reflectors.map((r) => r.changeCount);
    const last = this.lastView;
    if (last !== undefined && last.changes.every((c, i) => c === changes[i])) return last.view;
    const problems: string[] = [];
    let node: ClusterView['node'];
    for (const obj of this.nodeR.objects()) {
      try {
        node = nodeFacts(obj);
      } catch (err) {
        problems.push(`node ${this.nodeName}: ${(err as Error).message}`);
      }
    }
    const pods: PodFacts[] = [];
    for (const obj of this.podR.objects()) {
      try {
        pods.push(podFacts(obj));
      } catch (err) {
        problems.push(`pod: ${(err as Error).message}`);
      }
    }
    const namespaces: NamespaceFacts[] = [];
    for (const obj of this.nsR.objects()) {
      try {
        namespaces.push(namespaceFacts(obj));
      } catch (err) {
        problems.push(`namespace: ${(err as Error).message}`);
      }
    }
    const objects = this.infoR.objects();
    const nodeInfos: RawNodeInfo[] = [];
    for (let i = 0; i < objects.length; i++) {
      const object = objects[i] as object;
      let entry = this.infoEntries.get(object);
      if (entry === undefined) {
        entry = { name: objectName(object) ?? '', object };
        this.infoEntries.set(object, entry);
      }
      if (entry.name !== '') nodeInfos.push(entry);
    }
    const view = { node, nodeInfos, pods, namespaces, problems, synced: this.reflectors.every((r) => r.synced) };
    this.lastView = { changes, view };
    return view;
  }

  private nodeInfoPath(name: string): string {
    return `${NODE_INFOS_PATH}/${encodeURIComponent(name)}`;
  }

  async publishNodeInfo(info: NodeInfo): Promise<void> {
    const uid = this.view().node?.uid ?? '';
    const desired = nodeInfoObject(info, uid);
    for (let attempt = 0; ; attempt++) {
      let existing: unknown;
      try {
        existing = await this.api.request('GET', this.nodeInfoPath(info.name));
      } catch (err) {
        if (kubeErrorStatus(err) !== 404) throw apiError('get KmeshNodeInfo', err);
      }
      try {
        if (existing === undefined) {
          await this.api.request('POST', NODE_INFOS_PATH, desired);
        } else {
          const meta = (existing as { metadata?: { resourceVersion?: string; ownerReferences?: unknown } }).metadata;
          const ownerOk =
            uid === '' ||
            JSON.stringify(meta?.ownerReferences) ===
              JSON.stringify((desired.metadata as { ownerReferences?: unknown }).ownerReferences);
          if (nodeInfoUpToDate(existing, info) && ownerOk) return;
          const body = {
            ...desired,
            metadata: { ...(desired.metadata as object), resourceVersion: meta?.resourceVersion },
          };
          await this.api.request('PUT', this.nodeInfoPath(info.name), body);
        }
        return;
      } catch (err) {
        // 409: someone else wrote in between (or it appeared): read again and retry a few times.
        if (kubeErrorStatus(err) === 409 && attempt < 3) continue;
        throw apiError('write KmeshNodeInfo', err);
      }
    }
  }

  /**
   * Writes the status of our KmeshNodeInfo through the status subresource (PUT of the object as last seen, so a
   * concurrent write gives 409 and we read again); nothing when it already says so or the object does not exist
   * yet (the next step, after the spec is published, writes it).
   */
  async publishNodeStatus(status: NodeKeyStatus): Promise<void> {
    const statusPath = `${this.nodeInfoPath(this.nodeName)}/status`;
    for (let attempt = 0; ; attempt++) {
      let existing: unknown;
      try {
        existing = await this.api.request('GET', this.nodeInfoPath(this.nodeName));
      } catch (err) {
        if (kubeErrorStatus(err) === 404) return;
        throw apiError('get KmeshNodeInfo', err);
      }
      if (nodeKeyStatusUpToDate(existing, status)) return;
      try {
        await this.api.request('PUT', statusPath, { ...(existing as object), status: nodeKeyStatusJson(status) });
        return;
      } catch (err) {
        if (kubeErrorStatus(err) === 409 && attempt < 3) continue;
        throw apiError('write KmeshNodeInfo status', err);
      }
    }
  }

  async deleteNodeInfo(): Promise<boolean> {
    try {
      await this.api.request('DELETE', this.nodeInfoPath(this.nodeName));
      return true;
    } catch (err) {
      if (kubeErrorStatus(err) === 404) return false;
      throw apiError('delete KmeshNodeInfo', err);
    }
  }

  stop(): Promise<void> {
    for (const r of this.reflectors) r.stop();
    return Promise.resolve();
  }
}

function apiError(what: string, err: unknown): Error {
  return new Error(`${what} ${KMESH_NAMESPACE}: ${errorText(err)}`);
}
