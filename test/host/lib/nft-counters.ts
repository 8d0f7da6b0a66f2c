// An independent oracle for skb marks: nftables counters in a prerouting chain (priority -300, i.e. after TC
// ingress where our programs run) of one of our namespaces, one named counter per expectation.
import { run } from './kernel.js';

export interface CounterRule {
  name: string;
  /** nft match expression, e.g. `iifname "kmtpv" ip daddr 10.99.1.5 meta mark & 0xff == 0xe0`. */
  match: string;
}

export function installCounters(netns: string, rules: readonly CounterRule[]): void {
  const lines = [
    'table inet kmt_dp {',
    ...rules.map((r) => `  counter ${r.name} {}`),
    '  chain pre {',
    '    type filter hook prerouting priority -300; policy accept;',
    ...rules.map((r) => `    ${r.match} counter name ${r.name}`),
    '  }',
    '}',
  ];
  run('sh', ['-ec', `nft -f - <<'NFT'\n${lines.join('\n')}\nNFT`], netns);
}

export function readCounters(netns: string): Record<string, number> {
  const out = JSON.parse(run('nft', ['-j', 'list', 'counters', 'table', 'inet', 'kmt_dp'], netns)) as {
    nftables: { counter?: { name: string; packets: number } }[];
  };
  const counts: Record<string, number> = {};
  for (const item of out.nftables) if (item.counter) counts[item.counter.name] = item.counter.packets;
  return counts;
}
