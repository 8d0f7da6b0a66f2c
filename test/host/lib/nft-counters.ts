// An independent oracle for skb marks: nftables counters in one of our namespaces, one counting rule per
// expectation, identified by its comment (anonymous counters: named counter objects need nft_objref, a
// module the 6.1 guest does not autoload). `prerouting` rules sit in an inet prerouting chain (priority -300); `ingress` rules in a netdev
// ingress chain of one device, which sees frames right after TC ingress, even ones IP would drop as malformed.
import { run } from './kernel.js';

export interface CounterRule {
  name: string;
  /** nft match expression, e.g. `iifname "kmtpv" ip daddr 10.99.1.5 meta mark & 0xff == 0xe0`. */
  match: string;
  /** Where to count; default prerouting. */
  hook?: 'prerouting' | 'ingress';
}

export function installCounters(netns: string, rules: readonly CounterRule[], ingressDevice?: string): void {
  const pre = rules.filter((r) => (r.hook ?? 'prerouting') === 'prerouting');
  const ing = rules.filter((r) => r.hook === 'ingress');
  const lines = [
    'table inet kmt_dp {',
    '  chain pre {',
    '    type filter hook prerouting priority -300; policy accept;',
    ...pre.map((r) => `    ${r.match} counter comment "${r.name}"`),
    '  }',
    '}',
  ];
  if (ing.length > 0) {
    if (!ingressDevice) throw new Error('ingress counters need a device');
    lines.push(
      'table netdev kmt_dp_dev {',
      '  chain ing {',
      `    type filter hook ingress device "${ingressDevice}" priority 0; policy accept;`,
      ...ing.map((r) => `    ${r.match} counter comment "${r.name}"`),
      '  }',
      '}',
    );
  }
  run('sh', ['-ec', `nft -f - <<'NFT'\n${lines.join('\n')}\nNFT`], netns);
}

export function readCounters(netns: string): Record<string, number> {
  const out = JSON.parse(run('nft', ['-j', 'list', 'ruleset'], netns)) as {
    nftables: { rule?: { comment?: string; expr: { counter?: { packets: number } }[] } }[];
  };
  const counts: Record<string, number> = {};
  for (const item of out.nftables) {
    const rule = item.rule;
    if (!rule?.comment) continue;
    const counter = rule.expr.find((e) => e.counter)?.counter;
    if (counter) counts[rule.comment] = counter.packets;
  }
  return counts;
}
