// SecretStore on the Kubernetes API: the Opaque Secret `kmesh-ipsec` (data key `ipSec`, base64 of the JSON payload)
// and the KmeshNodeInfo custom resources (kmesh.net/v1alpha1, plural kmeshnodeinfos) in one namespace.
// Replace is a PUT carrying the resourceVersion that was read, so the API server refuses (409) a stale write.
// Requests go through the small REST client (kube/rest.ts), which starts far faster than the generated APIs.
import type { KubeConfig } from '@kubernetes/client-node/dist/config.js';
import { describeKubeError, kubeErrorStatus, kubeStatusMessage } from '../kube/errors.js';
import { DEFAULT_LIST_PAGE_SIZE, listedObjects, listInPages } from '../kube/list-pages.js';
import { KubeRestClient, withQuery } from '../kube/rest.js';
import { advertisedSpi } from './rotation.js';
import { IPSEC_SECRET_DATA_KEY, IPSEC_SECRET_NAME, KMESH_NODE_INFO } from '../model/kmesh-names.js';
import { StoreConflictError, StoreError } from './store.js';
import type { NodeInfoRead, SecretStore, StoredSecret } from './store.js';

export interface KubernetesStoreOptions {
  config: KubeConfig;
  /** API server URL, for messages. */
  server: string;
  namespace: string;
  /** Deadline of each API request, retries of 429/503 included (default 15 s). */
  timeoutMs?: number;
}

/** The parts of a Secret object we read; everything else is carried through a replace unchanged. */
interface SecretObject {
  apiVersion?: string;
  kind?: string;
  metadata?: { name?: string; namespace?: string; resourceVersion?: string; creationTimestamp?: string } & Record<
    string,
    unknown
  >;
  type?: string;
  data?: Record<string, string>;
  stringData?: unknown;
  [field: string]: unknown;
}

export class KubernetesSecretStore implements SecretStore {
  readonly location: string;
  private readonly api: KubeRestClient;
  private readonly namespace: string;
  private readonly server: string;
  private readonly secretsPath: string;
  private readonly nodeInfosPath: string;
  /** The objects behind the StoredSecrets we handed out, so a replace keeps labels, annotations and type. */
  private readonly objects = new WeakMap<StoredSecret, SecretObject>();

  constructor(options: KubernetesStoreOptions) {
    this.api = new KubeRestClient({
      config: options.config,
      server: options.server,
      timeoutMs: options.timeoutMs ?? 15_000,
    });
    this.namespace = options.namespace;
    this.server = options.server;
    const ns = encodeURIComponent(options.namespace);
    this.secretsPath = `/api/v1/namespaces/${ns}/secrets`;
    const { group, version, plural } = KMESH_NODE_INFO;
    this.nodeInfosPath = `/apis/${group}/${version}/namespaces/${ns}/${plural}`;
    this.location = `Secret ${options.namespace}/${IPSEC_SECRET_NAME}`;
  }

  private fail(err: unknown, action: string): never {
    throw new StoreError(describeKubeError(err, this.server, action));
  }

  private toStored(answer: unknown): StoredSecret {
    const secret = (typeof answer === 'object' && answer !== null ? answer : {}) as SecretObject;
    const encoded = secret.data?.[IPSEC_SECRET_DATA_KEY];
    const created = secret.metadata?.creationTimestamp;
    const stored: StoredSecret = {
      name: secret.metadata?.name ?? IPSEC_SECRET_NAME,
      namespace: secret.metadata?.namespace ?? this.namespace,
      payload: typeof encoded === 'string' ? Buffer.from(encoded, 'base64').toString('utf8') : undefined,
      version: secret.metadata?.resourceVersion ?? '',
      creationTime: created === undefined ? undefined : new Date(created),
    };
    this.objects.set(stored, secret);
    return stored;
  }

  /**
   * The Secret to write: the object we read (so labels, annotations and other data keys survive) with the new
   * payload and, for a replace, the resourceVersion that makes the API server refuse a stale write.
   */
  private secretBody(
    previous: SecretObject | undefined,
    payload: string,
    resourceVersion: string | undefined,
  ): SecretObject {
    const body: SecretObject = {
      ...previous,
      apiVersion: 'v1',
      kind: 'Secret',
      metadata: {
        ...previous?.metadata,
        name: IPSEC_SECRET_NAME,
        namespace: this.namespace,
        ...(resourceVersion === undefined ? {} : { resourceVersion }),
      },
      type: previous?.type ?? 'Opaque',
      data: { ...previous?.data, [IPSEC_SECRET_DATA_KEY]: Buffer.from(payload, 'utf8').toString('base64') },
    };
    delete body.stringData;
    return body;
  }

  /** A 404 when creating in a missing namespace is not "secret not found": say which it is. */
  private namespaceMissing(err: unknown): boolean {
    return kubeErrorStatus(err) === 404 && /namespaces? "?[^"\s]+"? not found/.test(kubeStatusMessage(err) ?? '');
  }

  async read(): Promise<StoredSecret | undefined> {
    try {
      return this.toStored(await this.api.request('GET', `${this.secretsPath}/${IPSEC_SECRET_NAME}`));
    } catch (err) {
      if (kubeErrorStatus(err) === 404) return undefined;
      return this.fail(err, `read ${this.location}`);
    }
  }

  async create(payload: string): Promise<StoredSecret> {
    const body = this.secretBody(undefined, payload, undefined);
    try {
      return this.toStored(await this.api.request('POST', this.secretsPath, body));
    } catch (err) {
      if (kubeErrorStatus(err) === 409) throw new StoreConflictError(`${this.location} was created meanwhile`);
      if (this.namespaceMissing(err)) {
        throw new StoreError(
          `cannot create ${this.location}: namespace ${this.namespace} does not exist; ` +
            `create it (kubectl create namespace ${this.namespace}) or pass --namespace`,
        );
      }
      return this.fail(err, `create ${this.location}`);
    }
  }

  async replace(current: StoredSecret, payload: string): Promise<StoredSecret> {
    const body = this.secretBody(this.objects.get(current), payload, current.version);
    try {
      return this.toStored(await this.api.request('PUT', `${this.secretsPath}/${IPSEC_SECRET_NAME}`, body));
    } catch (err) {
      const status = kubeErrorStatus(err);
      if (status === 409) throw new StoreConflictError(`${this.location} changed meanwhile`);
      if (status === 404) throw new StoreConflictError(`${this.location} was deleted meanwhile`);
      return this.fail(err, `update ${this.location}`);
    }
  }

  async delete(): Promise<boolean> {
    try {
      await this.api.request('DELETE', `${this.secretsPath}/${IPSEC_SECRET_NAME}`);
      return true;
    } catch (err) {
      if (kubeErrorStatus(err) === 404) return false;
      return this.fail(err, `delete ${this.location}`);
    }
  }

  async advertisedSpis(): Promise<number[]> {
    return (await this.nodeInfoObjects()).flatMap(advertisedSpi);
  }

  /**
   * Every KmeshNodeInfo. `latest`: read from etcd (`secret create` must see every SPI in use) in pages of
   * DEFAULT_LIST_PAGE_SIZE, as the daemon's source lists (kube/list-pages.ts): at 5,000 nodes one response was
   * megabytes the API server built at once. `cached`: from the API server's watch cache (resourceVersion "0",
   * which a cache answers whole): no etcd read at all, for `ipsec status --wait`'s polls.
   */
  async nodeInfoObjects(read: NodeInfoRead = 'latest'): Promise<unknown[]> {
    try {
      const get = (query: Record<string, string>) => this.api.request('GET', withQuery(this.nodeInfosPath, query));
      const listed =
        read === 'cached'
          ? listedObjects(await get({ resourceVersion: '0' }))
          : await listInPages(get, {}, DEFAULT_LIST_PAGE_SIZE);
      return listed.items;
    } catch (err) {
      // No KmeshNodeInfo CRD installed yet (or no such namespace): no node advertises anything.
      if (kubeErrorStatus(err) === 404) return [];
      return this.fail(err, `list KmeshNodeInfo objects in namespace ${this.namespace}`);
    }
  }
}
