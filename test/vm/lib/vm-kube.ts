// How a kernel-test VM reaches a real Kubernetes control plane running on the host, shared by both sides:
// the addresses (the guest's NIC on qemu's restricted user network, the forwarded API address, the relay
// address the e2e-kube suite gives its node namespaces; the serving certificate covers both API addresses,
// so TLS is verified everywhere), the "facts" the host hands the guest (a JSON file on the xfer share named by
// $KMESH_VM_KUBE), and reading them in the guest. See control-plane-host.ts for the host side.
import fs from 'node:fs';

/** The address and port the guest dials for the API server; qemu forwards each connection to host loopback. */
export const GUEST_API = { ip: '10.0.2.100', port: 6443 } as const;
/** Where the e2e-kube suite relays the API for its node namespaces (the underlay's test range). */
export const NODE_RELAY_IP = '198.18.0.254';
/** Every address the serving certificate must cover besides 127.0.0.1. */
export const CERT_IPS: readonly string[] = [GUEST_API.ip, NODE_RELAY_IP];

/** Guest environment variable naming the facts file; absent when the run has no control plane. */
export const FACTS_ENV = 'KMESH_VM_KUBE';
/** Guest environment variable saying why there is no control plane (binaries missing, not asked for). */
export const SKIP_ENV = 'KMESH_VM_KUBE_SKIP';
/** File name of the facts on the xfer share (the guest sees it under /run/kmesh-vm/). */
export const FACTS_FILE = 'kube.json';

export interface GuestKubeFacts {
  /** `https://10.0.2.100:6443`: the API server as the guest's root namespace reaches it. */
  server: string;
  caPem: string;
  /** system:masters (to create Nodes, Pods and Namespaces as a kubelet would, and for kmeshctl). */
  adminToken: string;
  /** Token of ServiceAccount kmesh-system/kmesh-ipsec-daemon, bound only by deploy/rbac.yaml. */
  daemonToken: string;
  /** `1.20.2`: the kube-apiserver's version. */
  kubeVersion: string;
  /** Whether kube-controller-manager runs (garbage collection by ownerReference). */
  controllerManager: boolean;
}

/** The facts of this guest's control plane, or why there are none. */
export function readGuestKubeFacts(env: NodeJS.ProcessEnv = process.env): GuestKubeFacts | { missing: string } {
  const file = env[FACTS_ENV];
  if (file === undefined || file === '') {
    return {
      missing:
        env[SKIP_ENV] ??
        `no control plane for this VM run ($${FACTS_ENV} unset): run it through npm run test:vm, or ` +
          'node dist/test/vm/vm.js --control-plane',
    };
  }
  const facts = JSON.parse(fs.readFileSync(file, 'utf8')) as GuestKubeFacts;
  for (const key of ['server', 'caPem', 'adminToken', 'daemonToken'] as const) {
    if (typeof facts[key] !== 'string' || facts[key] === '') throw new Error(`${file}: no ${key}`);
  }
  return facts;
}
