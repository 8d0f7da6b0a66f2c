// The host side of a kernel-test VM run against a real Kubernetes control plane: starts etcd +
// kube-apiserver + kube-controller-manager on host loopback (test/fixtures/control-plane.ts, binaries from
// KUBEBUILDER_ASSETS or the build cache), with a serving certificate that also covers the guest-side API
// addresses (vm-kube.ts), applies deploy/crd.yaml and deploy/rbac.yaml with kubectl, mints a token for the
// daemon's ServiceAccount, and returns what runInVm needs: the guest forward (qemu's restricted user network,
// one `busybox nc` per guest connection to the API server's loopback port), the facts file and its
// environment variable. Stopping is by PID (the fixture's); logs are kept when the caller says the run failed.
import { existsSync } from 'node:fs';
import path from 'node:path';
import { ControlPlane } from '../../fixtures/control-plane.js';
import { findControlPlaneBinaries } from '../../fixtures/control-plane-binaries.js';
import { applyManifests } from '../../fixtures/kube-cluster.js';
import type { GuestForward } from './qemu-args.js';
import { CERT_IPS, FACTS_ENV, FACTS_FILE, GUEST_API, SKIP_ENV, type GuestKubeFacts } from './vm-kube.js';

const GUEST_XFER = '/run/kmesh-vm';

export interface VmControlPlane {
  cp: ControlPlane;
  guestForward: GuestForward;
  files: Record<string, string>;
  env: Record<string, string>;
  /** Milliseconds: control plane up (etcd, apiserver ready, controller-manager started), manifests applied. */
  startMs: number;
  manifestsMs: number;
  /** Stops every process by PID; keeps the state directory (logs) when `keep`. */
  stop(keep: boolean): Promise<void>;
}

/** The guest forward's per-connection relay to host loopback `port`: busybox's `nc` (busybox-static is
 * installed by scripts/setup.sh for the initramfs). */
export function loopbackRelayCommand(port: number): string {
  const busybox = ['/usr/bin/busybox', '/bin/busybox'].find((p) => existsSync(p));
  if (busybox === undefined) throw new Error('no busybox for the guest forward: install busybox-static');
  return `${busybox} nc 127.0.0.1 ${port}`;
}

/**
 * Whether a control plane can run, and if not why (`{ missing }`); under CI=true a missing one is an error
 * (thrown), since CI must run e2e-kube against the real API server.
 */
export function vmControlPlaneAvailable(env: NodeJS.ProcessEnv = process.env): { missing?: string } {
  const found = findControlPlaneBinaries(env);
  if (!('missing' in found)) {
    if (found.controllerManager === undefined) {
      const missing = `${found.source} has no kube-controller-manager (e2e-kube needs garbage collection)`;
      if (env.CI === 'true') throw new Error(`CI=true but ${missing}`);
      return { missing };
    }
    return {};
  }
  if (env.CI === 'true') throw new Error(`CI=true but the real control plane cannot run: ${found.missing}`);
  return { missing: found.missing };
}

/** The guest environment telling suites that need a control plane why there is none. */
export function noControlPlaneEnv(reason: string): Record<string, string> {
  return { [SKIP_ENV]: reason };
}

/** Starts a control plane for one VM boot whose token must stay valid for `validForS` seconds. */
export async function startVmControlPlane(options: { validForS: number; name?: string }): Promise<VmControlPlane> {
  loopbackRelayCommand(0); // fail before starting anything when there is no busybox
  const t0 = Date.now();
  const cp = await ControlPlane.start({
    controllerManager: true,
    extraIps: CERT_IPS,
    name: options.name ?? 'kmesh-vm-cp',
  });
  const startMs = Date.now() - t0;
  try {
    const t1 = Date.now();
    await applyManifests(cp);
    // TokenRequest (no controller-manager needed); as long-lived as the boot may take.
    const body = (await cp.call('POST', '/api/v1/namespaces/kmesh-system/serviceaccounts/kmesh-ipsec-daemon/token', {
      apiVersion: 'authentication.k8s.io/v1',
      kind: 'TokenRequest',
      spec: { expirationSeconds: Math.max(3600, Math.ceil(options.validForS) + 600) },
    })) as { status?: { token?: string } };
    const daemonToken = body.status?.token;
    if (!daemonToken) throw new Error('TokenRequest for kmesh-system/kmesh-ipsec-daemon returned no token');
    const manifestsMs = Date.now() - t1;
    const facts: GuestKubeFacts = {
      server: `https://${GUEST_API.ip}:${GUEST_API.port}`,
      caPem: cp.caPem,
      adminToken: cp.adminToken,
      daemonToken,
      kubeVersion: cp.binaries.kubeVersion,
      controllerManager: true,
    };
    return {
      cp,
      guestForward: { guestIp: GUEST_API.ip, guestPort: GUEST_API.port, relayCommand: loopbackRelayCommand(cp.port) },
      files: { [FACTS_FILE]: `${JSON.stringify(facts, null, 2)}\n` },
      env: { [FACTS_ENV]: path.posix.join(GUEST_XFER, FACTS_FILE) },
      startMs,
      manifestsMs,
      stop: (keep) => cp.stop({ keep }),
    };
  } catch (err) {
    await cp.stop({ keep: true });
    throw new Error(`${(err as Error).message} (control plane logs kept in ${cp.dir})`, { cause: err });
  }
}
