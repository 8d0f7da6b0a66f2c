// The deploy/ manifests checked against what the code reads and calls: the CRD schema against the
// KmeshNodeInfo we publish and parseNodeInfo reads, the RBAC rules against the kube source's API calls,
// and the DaemonSet's args, env, volumes and paths against the daemon's flags and defaults.
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadAllYaml } from '@kubernetes/client-node';
import t from 'tap';
import { DEFAULT_BPF_FS_PATH, DEFAULT_STATE_DIR } from '../../src/daemon/config.js';
import { DEFAULT_IPSEC_KEY_FILE, KMESH_NAMESPACE } from '../../src/model/kmesh-names.js';
import { parseDaemonFlags } from '../../src/daemon/flags.js';
import { KUBE_SOURCE_API_CALLS } from '../../src/daemon/sources/kube-source.js';
import { nodeInfoObject } from '../../src/daemon/sources/objects.js';
import { parseNodeInfo } from '../../src/ipsec/validate-peer.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
/* eslint-disable @typescript-eslint/no-explicit-any, @typescript-eslint/no-unsafe-call, @typescript-eslint/no-unsafe-return,
   @typescript-eslint/no-unsafe-argument, @typescript-eslint/no-dynamic-delete --
   the manifests are untyped parsed YAML; asserting their shape is what this file does. */
type Any = any;
const load = (file: string): Any[] => loadAllYaml(fs.readFileSync(path.join(root, 'deploy', file), 'utf8'));

/** A tiny structural OpenAPI v3 check (type, required, properties, items): enough for our schema. */
function violations(schema: Any, value: unknown, where = ''): string[] {
  const type = schema.type as string | undefined;
  const out: string[] = [];
  const typeOk =
    type === undefined ||
    (type === 'object' && typeof value === 'object' && value !== null && !Array.isArray(value)) ||
    (type === 'array' && Array.isArray(value)) ||
    (type === 'string' && typeof value === 'string') ||
    (type === 'integer' && Number.isInteger(value));
  if (!typeOk) return [`${where || '.'}: expected ${type}`];
  if (type === 'object') {
    const obj = value as Record<string, unknown>;
    for (const r of (schema.required ?? []) as string[]) if (!(r in obj)) out.push(`${where}.${r}: required`);
    for (const [k, sub] of Object.entries((schema.properties ?? {}) as Record<string, Any>)) {
      if (k in obj) out.push(...violations(sub, obj[k], `${where}.${k}`));
    }
  }
  if (type === 'array')
    (value as unknown[]).forEach((v, i) => out.push(...violations(schema.items, v, `${where}[${i}]`)));
  return out;
}

t.test('CRD: kmeshnodeinfos.kmesh.net v1alpha1, namespaced, spec {spi, addresses, bootID, podCIDRS} required', (t) => {
  const [crd] = load('crd.yaml');
  t.equal(crd.kind, 'CustomResourceDefinition');
  t.equal(crd.metadata.name, 'kmeshnodeinfos.kmesh.net');
  t.equal(crd.spec.group, 'kmesh.net');
  t.equal(crd.spec.scope, 'Namespaced');
  t.equal(crd.spec.names.kind, 'KmeshNodeInfo');
  t.equal(crd.spec.names.plural, 'kmeshnodeinfos');
  const version = crd.spec.versions.find((v: Any) => v.name === 'v1alpha1');
  t.ok(version?.served && version.storage);
  const schema = version.schema.openAPIV3Schema;
  const spec = schema.properties.spec;
  t.same([...spec.required].sort(), ['addresses', 'bootID', 'podCIDRS', 'spi']);
  t.same(Object.keys(spec.properties).sort(), ['addresses', 'bootID', 'podCIDRS', 'spi']);
  t.equal(schema.properties.status.type, 'object');

  const info = {
    name: 'n1',
    spi: 7,
    addresses: ['198.18.0.1', 'fd00::1'],
    bootID: '550e8400-e29b-41d4-a716-446655440000',
    podCIDRs: ['10.244.1.0/24'],
  };
  const published = nodeInfoObject(info, 'uid-1');
  t.same(violations(schema, published), [], 'what we publish satisfies the CRD schema');
  t.same(parseNodeInfo(published), { ok: info }, 'and parseNodeInfo reads it back');
  for (const field of spec.required as string[]) {
    const broken = structuredClone(published) as { spec: Record<string, unknown> };
    delete broken.spec[field];
    t.not(violations(schema, broken).length, 0, `CRD rejects a missing ${field}`);
    t.ok('error' in parseNodeInfo(broken), `parseNodeInfo rejects a missing ${field}`);
  }
  t.end();
});

t.test('RBAC grants exactly the API calls the kube source makes', (t) => {
  const docs = load('rbac.yaml');
  const sa = docs.find((d) => d.kind === 'ServiceAccount');
  t.equal(sa.metadata.namespace, KMESH_NAMESPACE);
  const granted: string[] = [];
  for (const role of docs.filter((d) => d.kind === 'ClusterRole' || d.kind === 'Role')) {
    const binding = docs.find(
      (d) => d.kind === `${role.kind}Binding` && d.roleRef.name === role.metadata.name && d.roleRef.kind === role.kind,
    );
    t.ok(binding, `${role.kind} ${role.metadata.name} is bound`);
    t.same(binding.subjects, [{ kind: 'ServiceAccount', name: sa.metadata.name, namespace: KMESH_NAMESPACE }]);
    if (role.kind === 'Role')
      t.equal(role.metadata.namespace, KMESH_NAMESPACE, 'KmeshNodeInfo rights only in kmesh-system');
    for (const rule of role.rules) {
      t.notOk(rule.resources.includes('*') || rule.verbs.includes('*'), 'no wildcards');
      for (const g of rule.apiGroups)
        for (const r of rule.resources) for (const v of rule.verbs) granted.push(`${g}/${r}/${v}`);
    }
  }
  const needed = KUBE_SOURCE_API_CALLS.flatMap((c) => c.verbs.map((v) => `${c.group}/${c.resource}/${v}`));
  t.same(granted.sort(), needed.sort());
  t.notOk(
    granted.some((g) => g.startsWith('/secrets')),
    'the daemon never reads Secrets through the API',
  );
  t.end();
});

t.test('DaemonSet: start_kmesh.sh args, NODE_NAME, secret volume and host mounts match the daemon', (t) => {
  const [ds] = load('daemonset.yaml');
  t.equal(ds.kind, 'DaemonSet');
  t.equal(ds.metadata.namespace, KMESH_NAMESPACE);
  const pod = ds.spec.template.spec;
  const [rbacSa] = load('rbac.yaml').filter((d) => d.kind === 'ServiceAccount');
  t.equal(pod.serviceAccountName, rbacSa.metadata.name);
  t.equal(pod.hostNetwork, true, 'the daemon works in the node network namespace');
  const c = pod.containers[0];
  t.equal(c.securityContext.privileged, true);
  t.same(c.command, ['/bin/sh', '-c']);
  const [line] = c.args as string[];
  t.match(line, /^\.\/start_kmesh\.sh --mode=dual-engine --enable-bypass=false --enable-ipsec=true/);
  t.ok(fs.existsSync(path.join(root, 'start_kmesh.sh')), 'start_kmesh.sh exists at the top level');
  const env = c.env.find((e: Any) => e.name === 'NODE_NAME');
  t.equal(env.valueFrom.fieldRef.fieldPath, 'spec.nodeName');

  const argv = line!.split(/\s+/).slice(1);
  const parsed = parseDaemonFlags(argv, { NODE_NAME: 'node-a' });
  t.equal(parsed.kind, 'config', 'the DaemonSet args parse');
  if (parsed.kind !== 'config') return t.end();
  const cfg = parsed.config;
  t.equal(cfg.enableIpsec, true);

  const mountOf = (volume: string) => c.volumeMounts.find((m: Any) => m.name === volume);
  const volumeOf = (name: string) => pod.volumes.find((v: Any) => v.name === name);
  const secretVol = pod.volumes.find((v: Any) => v.secret);
  t.equal(secretVol.secret.secretName, 'kmesh-ipsec');
  t.equal(secretVol.secret.optional, true, 'the daemon starts before any secret exists');
  t.equal(path.join(mountOf(secretVol.name).mountPath, 'ipSec'), cfg.ipsecKeyFile);
  t.equal(cfg.ipsecKeyFile, DEFAULT_IPSEC_KEY_FILE);
  t.equal(mountOf('bpffs').mountPath, cfg.bpfFsPath);
  t.equal(cfg.bpfFsPath, DEFAULT_BPF_FS_PATH);
  t.equal(volumeOf('bpffs').hostPath.path, DEFAULT_BPF_FS_PATH);
  t.equal(mountOf('state').mountPath, cfg.stateDir);
  t.equal(cfg.stateDir, DEFAULT_STATE_DIR);
  t.equal(volumeOf('state').hostPath.path, DEFAULT_STATE_DIR);
  const port = c.ports.find((p: Any) => p.name === 'metrics');
  t.equal(port.containerPort, cfg.metricsAddr?.port);
  t.equal(c.readinessProbe.httpGet.port, cfg.metricsAddr?.port);
  t.equal(c.readinessProbe.httpGet.path, '/readyz');
  t.equal(c.workingDir, '/kmesh');
  const dockerfile = fs.readFileSync(path.join(root, 'deploy/Dockerfile'), 'utf8');
  t.match(dockerfile, /^WORKDIR \/kmesh$/m, 'the image puts start_kmesh.sh in the DaemonSet workingDir');
  t.match(dockerfile, /start_kmesh\.sh/);
  t.end();
});
