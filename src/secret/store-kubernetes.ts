// SecretStore on the Kubernetes API: the Opaque Secret `kmesh-ipsec` (data key `ipSec`, base64 of the JSON payload)
// and the KmeshNodeInfo custom resources (kmesh.net/v1alpha1, plural kmeshnodeinfos) in one namespace.
// Replace is a PUT carrying the resourceVersion that was read, so the API server refuses (409) a stale write.
import { CoreV1Api, CustomObjectsApi, V1ObjectMeta, V1Secret } from '@kubernetes/client-node';
import type { ConfigurationOptions, KubeConfig } from '@kubernetes/client-node';
import { describeKubeError, kubeErrorStatus, kubeStatusMessage, requestTimeout } from '../kube/client.js';
import { advertisedSpi } from './rotation.js';
import { SECRET_DATA_KEY, SECRET_NAME, StoreConflictError, StoreError } from './store.js';
import type { SecretStore, StoredSecret } from './store.js';

/** The KmeshNodeInfo custom resource (SPEC §A3). */
export const KMESH_NODE_INFO = { group: 'kmesh.net', version: 'v1alpha1', plural: 'kmeshnodeinfos' } as const;

export interface KubernetesStoreOptions {
  config: KubeConfig;
  /** API server URL, for messages. */
  server: string;
  namespace: string;
  /** Abort each API request after this long (default 15 s). */
  timeoutMs?: number;
}

export class KubernetesSecretStore implements SecretStore {
  readonly location: string;
  private readonly core: CoreV1Api;
  private readonly custom: CustomObjectsApi;
  private readonly namespace: string;
  private readonly server: string;
  private readonly options: ConfigurationOptions;
  /** The objects behind the StoredSecrets we handed out, so a replace keeps labels, annotations and type. */
  private readonly objects = new WeakMap<StoredSecret, V1Secret>();

  constructor(options: KubernetesStoreOptions) {
    this.core = options.config.makeApiClient(CoreV1Api);
    this.custom = options.config.makeApiClient(CustomObjectsApi);
    this.namespace = options.namespace;
    this.server = options.server;
    this.options = requestTimeout(options.timeoutMs ?? 15_000);
    this.location = `Secret ${options.namespace}/${SECRET_NAME}`;
  }

  private fail(err: unknown, action: string): never {
    throw new StoreError(describeKubeError(err, this.server, action));
  }

  private toStored(secret: V1Secret): StoredSecret {
    const encoded = secret.data?.[SECRET_DATA_KEY];
    const stored: StoredSecret = {
      name: secret.metadata?.name ?? SECRET_NAME,
      namespace: secret.metadata?.namespace ?? this.namespace,
      payload: encoded === undefined ? undefined : Buffer.from(encoded, 'base64').toString('utf8'),
      version: secret.metadata?.resourceVersion ?? '',
      creationTime: secret.metadata?.creationTimestamp,
    };
    this.objects.set(stored, secret);
    return stored;
  }

  /**
   * The Secret to write: the object we read (so labels, annotations and other data keys survive) with the new
   * payload and, for a replace, the resourceVersion that makes the API server refuse a stale write.
   */
  private secretBody(previous: V1Secret | undefined, payload: string, resourceVersion: string | undefined): V1Secret {
    const body = Object.assign(new V1Secret(), previous);
    body.apiVersion = 'v1';
    body.kind = 'Secret';
    body.metadata = Object.assign(new V1ObjectMeta(), previous?.metadata, {
      name: SECRET_NAME,
      namespace: this.namespace,
      resourceVersion,
    });
    body.type = previous?.type ?? 'Opaque';
    body.data = Object.assign({}, previous?.data, {
      [SECRET_DATA_KEY]: Buffer.from(payload, 'utf8').toString('base64'),
    });
    delete body.stringData;
    return body;
  }

  /** A 404 when creating in a missing namespace is not "secret not found": say which it is. */
  private namespaceMissing(err: unknown): boolean {
    return kubeErrorStatus(err) === 404 && /namespaces? "?[^"\s]+"? not found/.test(kubeStatusMessage(err) ?? '');
  }

  async read(): Promise<StoredSecret | undefined> {
    try {
      const secret = await this.core.readNamespacedSecret(
        { name: SECRET_NAME, namespace: this.namespace },
        this.options,
      );
      return this.toStored(secret);
    } catch (err) {
      if (kubeErrorStatus(err) === 404) return undefined;
      return this.fail(err, `read ${this.location}`);
    }
  }

  async create(payload: string): Promise<StoredSecret> {
    const body = this.secretBody(undefined, payload, undefined);
    try {
      return this.toStored(await this.core.createNamespacedSecret({ namespace: this.namespace, body }, this.options));
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
      return this.toStored(
        await this.core.replaceNamespacedSecret({ name: SECRET_NAME, namespace: this.namespace, body }, this.options),
      );
    } catch (err) {
      const status = kubeErrorStatus(err);
      if (status === 409) throw new StoreConflictError(`${this.location} changed meanwhile`);
      if (status === 404) throw new StoreConflictError(`${this.location} was deleted meanwhile`);
      return this.fail(err, `update ${this.location}`);
    }
  }

  async delete(): Promise<boolean> {
    try {
      await this.core.deleteNamespacedSecret({ name: SECRET_NAME, namespace: this.namespace }, this.options);
      return true;
    } catch (err) {
      if (kubeErrorStatus(err) === 404) return false;
      return this.fail(err, `delete ${this.location}`);
    }
  }

  async advertisedSpis(): Promise<number[]> {
    let list: unknown;
    try {
      list = await this.custom.listNamespacedCustomObject(
        { ...KMESH_NODE_INFO, namespace: this.namespace },
        this.options,
      );
    } catch (err) {
      // No KmeshNodeInfo CRD installed yet (or no such namespace): no node advertises anything.
      if (kubeErrorStatus(err) === 404) return [];
      return this.fail(err, `list KmeshNodeInfo objects in namespace ${this.namespace}`);
    }
    const items = (list as { items?: unknown }).items;
    return Array.isArray(items) ? items.flatMap(advertisedSpi) : [];
  }
}
