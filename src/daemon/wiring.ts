// Builds the real kernel-facing adapters from the configuration: XFRM over netlink in the daemon's own
// network namespace, and the libbpf datapath with its pins under <bpf-fs-path>/bpf_kmesh_workload.
import path from 'node:path';
import { BpfDatapath } from '../datapath/bpf-datapath.js';
import { NetlinkXfrmKernel } from '../xfrm/netlink-kernel.js';
import { shellWord } from '../util/shell-word.js';
import { dirStoreKeyFile } from '../model/kmesh-names.js';
import type { DaemonConfig } from './config.js';
import { DatapathAdapter } from './datapath-port.js';
import { IpsecAdapter } from './ipsec-port.js';

/** Kmesh's pin directory name under the bpffs mount (km_nodeinfo lives in <root>/map/). */
const PIN_DIR_NAME = 'bpf_kmesh_workload';

function bpffsRoot(config: Pick<DaemonConfig, 'bpfFsPath'>): string {
  return path.join(config.bpfFsPath, PIN_DIR_NAME);
}

/**
 * How to create the secret this daemon reads, for the status of a node that has no key yet: with a dir store and
 * its key file, kmeshctl needs the same --store.
 */
export function createSecretCommand(config: Pick<DaemonConfig, 'store' | 'ipsecKeyFile'>): string {
  if (config.store.kind === 'dir' && config.ipsecKeyFile === dirStoreKeyFile(config.store.root)) {
    return `kmeshctl --store ${shellWord(`dir:${config.store.root}`)} secret create`;
  }
  return 'kmeshctl secret create';
}

export function createIpsecPort(config: DaemonConfig): Promise<IpsecAdapter> {
  return Promise.resolve(
    new IpsecAdapter(new NetlinkXfrmKernel({ watch: true }), {
      graceMs: config.rotationGraceSeconds * 1000,
      createSecretCommand: createSecretCommand(config),
      retirementRule: config.rotationRetirement,
      ackTimeoutMs: config.rotationAckTimeoutSeconds * 1000,
    }),
  );
}

/** `log` hears of pinned maps of an earlier build that loading replaced (src/datapath/map-migration.ts). */
export function createDatapathPort(
  config: DaemonConfig,
  log?: (msg: string, fields: Record<string, unknown>) => void,
): DatapathAdapter {
  return new DatapathAdapter(new BpfDatapath(), bpffsRoot(config), log);
}
