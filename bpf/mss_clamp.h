/* MSS clamping for tc_mark_encrypt's hit path: a TCP SYN or SYN-ACK leaving a managed pod for a remote pod
 * CIDR (so it, and the whole connection, will be ESP-encrypted) has its MSS option lowered to the limit in
 * km_ipsec_config for its family, so that the peer never sends a segment that no longer fits the underlay
 * MTU once the ESP tunnel overhead is added. Without it, full-size segments rely on ICMP "fragmentation
 * needed" / "packet too big" reaching the pod, and TCP stalls where ICMP is filtered.
 *
 * Cost on the non-SYN hit path: the protocol byte and one TCP flags byte. Only SYNs call into the option walk
 * and read the map. The rewrite stores two bytes and fixes the TCP checksum with
 * bpf_l4_csum_replace, which is correct for a checksum the stack has finished (test-run, forwarded packets) and
 * for one still to be completed by offload (CHECKSUM_PARTIAL, a pod's own packets on its veth). IPv4 fragments
 * other than the first, IPv6 with extension headers and options that do not parse are left alone. */
#ifndef KMESH_MSS_CLAMP_H
#define KMESH_MSS_CLAMP_H

#include <linux/bpf.h>
#include <linux/in.h>
#include <linux/tcp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "maps.h"
#include "parse.h"

#define KM_TCP_OPT_EOL 0
#define KM_TCP_OPT_NOP 1
#define KM_TCP_OPT_MSS 2
#define KM_TCP_OPTS_MAX 40

/* Offset of the MSS option's value from `base` (where the `len` bytes of TCP options start in the packet), or
 * -1 when there is none. Reads two bytes per option with a helper rather than indexing a stack copy: the
 * position then never becomes part of a pointer, the verifier need not track it exactly, and the walk
 * verifies in a few thousand instructions on every kernel instead of exploding over the possible positions. */
static __always_inline int km_find_mss(struct __sk_buff *skb, __u32 base, __u64 len)
{
	/* 64-bit: 32-bit values are compared through zero-extended copies, and the bounds the verifier learns
	 * from the comparison would not reach the register the loop carries. */
	__u64 i = 0;

	/* Hide len's bound (<= 40) from clang, which would otherwise drop the i > 40 check below as implied by the
	 * i + 1 >= len one; the verifier needs it where it stands. */
	asm volatile("" : "+r"(len));
	for (int n = 0; n < KM_TCP_OPTS_MAX; n++) {
		__u8 kl[2];

		if (i + 1 >= len)
			return -1;
		if (bpf_skb_load_bytes(skb, base + i, kl, sizeof(kl)))
			return -1;
		if (kl[0] == KM_TCP_OPT_EOL)
			return -1;
		if (kl[0] == KM_TCP_OPT_NOP) {
			i++;
			continue;
		}
		if (kl[0] == KM_TCP_OPT_MSS)
			return kl[1] == 4 && i + 4 <= len ? (int)(i + 2) : -1;
		if (kl[1] < 2)
			return -1;
		i += kl[1];
		/* Past the options: done. Also keeps the verifier's range of i at most [x, 40] at the loop head, so
		 * the states of later iterations fall within earlier ones and are pruned. */
		if (i > KM_TCP_OPTS_MAX)
			return -1;
	}
	return -1;
}

/* The clamping itself, for a SYN whose TCP header starts at `tcpoff`. A global (not inlined) function: the
 * verifier checks it once on its own, instead of once for every path through the CIDR lookup that reaches it,
 * which would exceed its instruction budget with the option walk. Returns 1 when the MSS was lowered. */
__noinline int km_clamp_syn_mss(struct __sk_buff *skb, __u32 tcpoff, __u32 is_v4)
{
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	__u32 zero = 0;
	struct km_config *cfg = bpf_map_lookup_elem(&km_ipsec_config, &zero);
	struct tcphdr *tcp;
	__u32 optlen, base;
	__u8 mss[2], *opt;
	__u16 limit, old, new;
	int at;

	if (!cfg)
		return 0;
	limit = is_v4 ? cfg->mss4 : cfg->mss6;
	if (!limit)
		return 0;
	tcpoff &= 0xff;
	tcp = data + tcpoff;
	if ((void *)(tcp + 1) > end)
		return 0;
	optlen = tcp->doff * 4;
	if (optlen <= sizeof(struct tcphdr))
		return 0;
	optlen -= sizeof(struct tcphdr);
	if (optlen > KM_TCP_OPTS_MAX || optlen < 4)
		return 0;
	base = tcpoff + sizeof(struct tcphdr);
	opt = (__u8 *)(tcp + 1);
	if ((void *)(opt + 4) <= end && opt[0] == KM_TCP_OPT_MSS && opt[1] == 4) {
		/* Where Linux and most stacks put it: read in place, no walk. */
		at = 2; /* the value, after kind and length */
		old = (__u16)opt[2] << 8 | opt[3];
	} else {
		at = km_find_mss(skb, base, optlen);
		if (at < 0 || bpf_skb_load_bytes(skb, base + at, mss, sizeof(mss)))
			return 0;
		old = (__u16)mss[0] << 8 | mss[1];
	}
	if (old <= limit)
		return 0;
	old = bpf_htons(old);
	new = bpf_htons(limit);
	if (bpf_skb_store_bytes(skb, base + at, &new, sizeof(new), 0))
		return 0;
	if (bpf_l4_csum_replace(skb, tcpoff + offsetof(struct tcphdr, check), old, new, sizeof(new)))
		return 0;
	return 1;
}

/* The inline part on the hit path: TCP with SYN set (SYN or SYN-ACK)? Only then the call. Returns 1 when the
 * MSS was lowered, 0 otherwise. Packet pointers in `l3` are invalid afterwards. */
static __always_inline int km_clamp_mss(struct __sk_buff *skb, const struct km_l3 *l3)
{
	void *end = (void *)(long)skb->data_end;
	struct tcphdr *tcp;
	__u32 l4off;

	if (l3->proto != IPPROTO_TCP)
		return 0;
	if (l3->family == KM_AF_INET) {
		if (l3->ip4->frag_off & bpf_htons(0x1fff))
			return 0;
		l4off = l3->ip4->ihl * 4;
		if (l4off < sizeof(struct iphdr))
			return 0;
		tcp = (void *)l3->ip4 + l4off;
	} else {
		tcp = (void *)(l3->ip6 + 1);
	}
	if ((void *)(tcp + 1) > end || !tcp->syn)
		return 0;
	return km_clamp_syn_mss(skb, (void *)tcp - (void *)(long)skb->data, l3->family == KM_AF_INET);
}

#endif
