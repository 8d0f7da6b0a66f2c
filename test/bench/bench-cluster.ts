// The cluster bench:xfrm plans for, and its cold-plan floor (cold-plan-floor.ts) builds bare: the local node and N
// peers, one IPv4 underlay address each (198.18.0.0/15) and one pod CIDR each (10.x.y.0/24), under one key.
import { KeyHistory } from '../../src/keys/key-history.js';
import type { NodeInfo } from '../../src/model/node.js';

export interface BenchCluster {
  local: NodeInfo;
  peers: NodeInfo[];
  keys: KeyHistory;
}

/**
 * The local node and N peers of a cluster (IPv4 underlay 198.18.0.0/15 and pod CIDRs 10.x.y.0/24), decoded from JSON
 * as the daemon's sources decode the objects they read: their texts are then flat strings, where the template
 * literals below make rope strings (names and boot IDs of 13 characters and more) that V8 flattens, copying them,
 * the first time each is hashed or compared, which no daemon pays (~7 ms of a cold 5,000-peer plan).
 */
export function benchCluster(peers: number): BenchCluster {
  const node = (i: number): NodeInfo => ({
    name: `bench-node-${String(i).padStart(5, '0')}`,
    spi: 1,
    addresses: [`198.${18 + (i >> 16)}.${(i >> 8) & 0xff}.${i & 0xff}`],
    bootID: `550e8400-e29b-41d4-a716-${String(i).padStart(12, '0')}`,
    podCIDRs: [`10.${(i >> 8) & 0xff}.${i & 0xff}.0/24`],
  });
  const psk = Buffer.alloc(36);
  for (let i = 0; i < psk.length; i++) psk[i] = (i * 37 + 11) & 0xff;
  const keys = KeyHistory.of([{ spi: 1, aeadKeyName: 'rfc4106(gcm(aes))', key: psk, icvBits: 128 }]);
  const nodes = JSON.parse(JSON.stringify(Array.from({ length: peers + 1 }, (_, i) => node(i + 1)))) as NodeInfo[];
  return { local: nodes[0] as NodeInfo, peers: nodes.slice(1), keys };
}
