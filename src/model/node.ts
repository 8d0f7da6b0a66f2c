// Plain data the whole product speaks: a node as published in its KmeshNodeInfo (and when two say the same), and an
// IPsec key version.
import { sameItems } from './same-items.js';

/**
 * One node's KmeshNodeInfo (kmesh.net/v1alpha1, namespaced, in kmesh-system, named after the node; spec fields
 * spi, addresses, bootID and podCIDRS with a capital S), validated: addresses are InternalIPs, podCIDRs normalised.
 */
export interface NodeInfo {
  /** metadata.name = the Kubernetes node name. */
  name: string;
  /** The SPI this node advertises: it holds inbound SAs for it and accepts traffic with it. */
  spi: number;
  /** InternalIP addresses, textual exactly as published (they feed the key derivation). */
  addresses: string[];
  /** Node boot ID (status.nodeInfo.bootID); a change means the node rebooted and keys are re-derived. */
  bootID: string;
  /** Pod CIDRs of the node, e.g. ["10.244.1.0/24", "fd00:10:244:1::/64"]. */
  podCIDRs: string[];
}

/** Whether two node descriptions say the same, field by field. */
export function sameNodeInfo(a: NodeInfo, b: NodeInfo): boolean {
  return (
    a.name === b.name &&
    a.spi === b.spi &&
    a.bootID === b.bootID &&
    sameItems(a.addresses, b.addresses) &&
    sameItems(a.podCIDRs, b.podCIDRs)
  );
}

/** One version of the pre-shared key, as the Secret kmesh-system/kmesh-ipsec carries it in its data key ipSec. */
export interface IpsecKey {
  spi: number;
  /** Always "rfc4106(gcm(aes))". */
  aeadKeyName: string;
  /** 36 bytes: 32-byte AES-256 key followed by the 4-byte GCM salt. */
  key: Buffer;
  /** ICV length in bits (the Secret's `length`), 128. */
  icvBits: number;
}
