// End-to-end in the kernel-test VM with the Kubernetes store, against a real control plane: etcd,
// kube-apiserver and kube-controller-manager run on the host (started by run-suites.ts, see
// test/vm/lib/control-plane-host.ts), deploy/crd.yaml and deploy/rbac.yaml applied; the guest reaches the API
// at 10.0.2.100:6443 through qemu's restricted user network. The same scenarios as e2e-dir run here:
// this suite registers Nodes, Pods and Namespaces as a kubelet would (admin token), the daemons in the node
// namespaces reach the API through a TCP relay on the underlay (198.18.0.254:6443, also in the serving
// certificate, so TLS is verified) with the token of the ServiceAccount bound only by deploy/rbac.yaml,
// kmeshctl writes the Secret through the API with an admin kubeconfig, a simulated kubelet projects the Secret
// read back from the API into each node's secret directory with the atomic `..data` symlink swap, and a
// deleted Node's KmeshNodeInfo is removed by Kubernetes' garbage collector (ownerReference), not by the test.
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import t from 'tap';
import { kmeshctlPath, type ClusterStore, type ObjectKind } from '../../../src/demo/cluster-store.js';
import { espSupport } from '../../../src/demo/esp-support.js';
import type { SimNode } from '../../../src/demo/netns-cluster.js';
import { runScenarios } from '../lib/e2e-scenarios.js';
import { run, runOk, type RunResult } from '../../../src/demo/shell.js';
import { writeKubeconfig } from '../../fixtures/kubeconfig.js';
import { KubeApi } from '../../fixtures/kube-api.js';
import { GUEST_API, NODE_RELAY_IP, readGuestKubeFacts, type GuestKubeFacts } from '../lib/vm-kube.js';

const NODE_INFOS = '/apis/kmesh.net/v1alpha1/namespaces/kmesh-system/kmeshnodeinfos';

interface Obj {
  metadata?: { name?: string; namespace?: string; labels?: Record<string, string> };
  spec?: Record<string, unknown>;
  status?: Record<string, unknown>;
}

class RealKubeClusterStore implements ClusterStore {
  readonly description: string;
  readonly collectsGarbage: boolean;
  private version = 0;

  constructor(
    private readonly api: KubeApi,
    facts: GuestKubeFacts,
    private readonly work: string,
    private readonly adminKubeconfig: string,
    private readonly daemonKubeconfig: string,
  ) {
    this.description = `kube-apiserver ${facts.kubeVersion} on the host`;
    this.collectsGarbage = facts.controllerManager;
  }

  secretDir(node: SimNode): string {
    return path.join(this.work, node.name, 'kmesh-ipsec');
  }

  daemonFlags(node: SimNode): string[] {
    return [
      '--store=kubernetes',
      `--kubeconfig=${this.daemonKubeconfig}`,
      `--ipsec-key-file=${path.join(this.secretDir(node), 'ipSec')}`,
    ];
  }

  /** Writes the object as its owner would: spec and metadata, then the status subresource (a kubelet's part). */
  async put(kind: ObjectKind, obj: Record<string, unknown>): Promise<void> {
    const o = obj as Obj;
    const name = o.metadata?.name ?? '';
    if (kind === 'namespaces') {
      await this.api.createOrPatch('/api/v1/namespaces', name, obj);
      return;
    }
    let collection = '/api/v1/nodes';
    let body: Record<string, unknown> = { ...obj };
    if (kind === 'pods') {
      const ns = o.metadata?.namespace ?? 'default';
      await this.api.call('POST', '/api/v1/namespaces', { metadata: { name: ns } }, { also: [409] });
      collection = `/api/v1/namespaces/${ns}/pods`;
      body = {
        ...obj,
        spec: {
          ...o.spec,
          containers: [{ name: 'app', image: 'registry.invalid/app:1' }],
          // No kubelet heartbeats these Nodes: the controller-manager taints them unreachable after its grace
          // period, and would evict pods without this toleration (as a DaemonSet's pods have) minutes later.
          tolerations: [{ operator: 'Exists', effect: 'NoExecute' }],
        },
      };
    }
    await this.api.createOrPatch(collection, name, body);
    if (o.status !== undefined) await this.api.patch(`${collection}/${name}/status`, { status: o.status });
  }

  async remove(kind: ObjectKind | 'kmeshnodeinfos', namespace: string | undefined, name: string): Promise<void> {
    const urlPath =
      kind === 'kmeshnodeinfos'
        ? `${NODE_INFOS}/${name}`
        : kind === 'pods'
          ? `/api/v1/namespaces/${namespace ?? 'default'}/pods/${name}`
          : `/api/v1/${kind}/${name}`;
    await this.api.call('DELETE', urlPath, undefined, { also: [404] });
  }

  async nodeInfos(): Promise<Map<string, unknown>> {
    const list = (await this.api.call('GET', NODE_INFOS)).body as { items?: Obj[] };
    return new Map((list.items ?? []).map((o) => [o.metadata?.name ?? '', o]));
  }

  kmeshctl(args: readonly string[]): Promise<RunResult> {
    return run('node', [kmeshctlPath(), `--kubeconfig=${this.adminKubeconfig}`, ...args]);
  }

  /** The kubelet's projection of the Secret read from the API: new timestamped dir, `..data` swapped
   * atomically, `ipSec -> ..data/ipSec`. */
  async syncSecret(): Promise<void> {
    const res = await this.api.call('GET', '/api/v1/namespaces/kmesh-system/secrets/kmesh-ipsec', undefined, {
      also: [404],
    });
    const data = (res.body as { data?: { ipSec?: string } }).data?.ipSec;
    if (res.status === 404 || data === undefined) throw new Error('no kmesh-ipsec Secret in the API server');
    const payload = Buffer.from(data, 'base64');
    this.version += 1;
    for (const name of ['node-1', 'node-2', 'node-3']) {
      const dir = path.join(this.work, name, 'kmesh-ipsec');
      await fsp.mkdir(dir, { recursive: true });
      const previous = fs.existsSync(path.join(dir, '..data')) ? fs.readlinkSync(path.join(dir, '..data')) : undefined;
      const version = `..2024_01_01_00_00_0${this.version}.${process.pid}`;
      await fsp.mkdir(path.join(dir, version));
      await fsp.writeFile(path.join(dir, version, 'ipSec'), payload);
      await fsp.symlink(version, path.join(dir, '..data_tmp'));
      await fsp.rename(path.join(dir, '..data_tmp'), path.join(dir, '..data'));
      if (!fs.existsSync(path.join(dir, 'ipSec'))) await fsp.symlink('..data/ipSec', path.join(dir, 'ipSec'));
      if (previous !== undefined) await fsp.rm(path.join(dir, previous), { recursive: true, force: true });
    }
  }
}

/** Relays TCP from `listenIp:port` (the underlay, reachable from the node namespaces) to the API server. */
function apiRelay(listenIp: string, port: number, upstreamIp: string, upstreamPort: number) {
  const open = new Set<net.Socket>();
  const server = net.createServer((client) => {
    const upstream = net.connect(upstreamPort, upstreamIp);
    for (const s of [client, upstream]) {
      open.add(s);
      s.once('close', () => open.delete(s));
    }
    client.on('error', () => upstream.destroy());
    upstream.on('error', () => client.destroy());
    client.pipe(upstream).pipe(client);
  });
  return {
    listen: () => new Promise<void>((resolve, reject) => server.once('error', reject).listen(port, listenIp, resolve)),
    close: async () => {
      // Watches stay open: end every relayed connection, or close() would wait for them forever.
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      for (const s of open) s.destroy();
      await closed;
    },
  };
}

const esp = process.getuid?.() === 0 ? await espSupport() : { ok: false as const, reason: 'not root' };
const facts = readGuestKubeFacts();
if ('missing' in facts && process.env.CI === 'true' && esp.ok) {
  throw new Error(`CI=true but e2e-kube has no control plane: ${facts.missing}`);
}
const skip = !esp.ok
  ? { skip: `kernel cannot run ESP here (${esp.reason}); this suite runs in the kernel-test VM` }
  : 'missing' in facts
    ? { skip: facts.missing }
    : {};
{
  t.test('daemon end to end, Kubernetes store (real control plane)', skip, async (t) => {
    if ('missing' in facts) return;
    const work = t.testdir();
    const api = new KubeApi(facts.server, facts.caPem, facts.adminToken);
    t.teardown(() => api.close());
    const version = (await api.call('GET', '/version')).body as { gitVersion?: string };
    t.comment(`API server ${version.gitVersion ?? '?'} at ${facts.server}`);
    const admin = writeKubeconfig(path.join(work, 'kubeconfig.admin'), {
      server: facts.server,
      token: facts.adminToken,
      caData: facts.caPem,
      context: 'admin',
    });
    const daemons = writeKubeconfig(path.join(work, 'kubeconfig.daemon'), {
      server: `https://${NODE_RELAY_IP}:${GUEST_API.port}`,
      token: facts.daemonToken,
      caData: facts.caPem,
      context: 'kmesh-ipsec-daemon',
      namespace: 'kmesh-system',
    });
    const relay = apiRelay(NODE_RELAY_IP, GUEST_API.port, GUEST_API.ip, GUEST_API.port);
    const store = new RealKubeClusterStore(api, facts, work, admin, daemons);
    await runScenarios(
      {
        prefix: 'kmk',
        workDir: work,
        store,
        afterCreate: async (cluster) => {
          await runOk('ip', [
            'link',
            'add',
            'kmk-api',
            'type',
            'veth',
            'peer',
            'name',
            'api',
            'netns',
            cluster.underlayNetns,
          ]);
          await runOk('ip', ['-n', cluster.underlayNetns, 'link', 'set', 'api', 'master', 'br0', 'up']);
          await runOk('ip', ['addr', 'add', `${NODE_RELAY_IP}/24`, 'dev', 'kmk-api']);
          await runOk('ip', ['link', 'set', 'kmk-api', 'up']);
          await relay.listen();
        },
        beforeDestroy: async () => {
          await relay.close();
          await run('ip', ['link', 'del', 'kmk-api']);
        },
      },
      {
        ok: (cond, what, extra) => t.ok(cond, what, cond || extra === undefined ? {} : { found: extra }),
        log: (l) => t.comment(l),
      },
    );
  });
}
