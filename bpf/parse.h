/* Minimal L2/L3 parsing for the Kmesh IPsec TC programs: Ethernet + fixed IPv4/IPv6 header, bounds-checked
 * direct packet access. Anything else (non-IP ethertype, a frame too short for the IP header) is reported as
 * unparsed and the programs leave it alone. No extension-header walking: ESP is recognised only as the
 * protocol / next-header of the fixed header, which is where Linux's own ESP output puts it. */
#ifndef KMESH_PARSE_H
#define KMESH_PARSE_H

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "maps.h"
#include "cidr_index.h"

#define KM_AF_INET 2
#define KM_AF_INET6 10

struct km_l3 {
	__u32 family; /* KM_AF_INET / KM_AF_INET6, 0 = unparsed */
	__u8 proto;   /* IPv4 protocol / IPv6 next header */
	struct iphdr *ip4;
	struct ipv6hdr *ip6;
};

static __always_inline int km_parse(struct __sk_buff *skb, struct km_l3 *l3)
{
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;

	if ((void *)(eth + 1) > end)
		return -1;
	if (eth->h_proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip4 = (void *)(eth + 1);
		if ((void *)(ip4 + 1) > end)
			return -1;
		l3->family = KM_AF_INET;
		l3->proto = ip4->protocol;
		l3->ip4 = ip4;
		return 0;
	}
	if (eth->h_proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = (void *)(eth + 1);
		if ((void *)(ip6 + 1) > end)
			return -1;
		l3->family = KM_AF_INET6;
		l3->proto = ip6->nexthdr;
		l3->ip6 = ip6;
		return 0;
	}
	return -1;
}

/* Is this address (the packet's source or destination) inside a remote Kmesh node's pod CIDR? Answered by the
 * compiled index (cidr_index.h) when one is installed, else by the km_nodeinfo LPM trie. */
static __always_inline int km_in_remote_cidr(const struct km_l3 *l3, int want_source)
{
	struct km_lpm_key key = {};
	const void *addr;
	__u32 *flags;
	int hit;

	if (l3->family == KM_AF_INET)
		addr = want_source ? &l3->ip4->saddr : &l3->ip4->daddr;
	else
		addr = want_source ? (const void *)&l3->ip6->saddr : (const void *)&l3->ip6->daddr;
	hit = km_cidr_index_lookup(l3->family == KM_AF_INET, addr);
	if (hit >= 0)
		return hit;

	if (l3->family == KM_AF_INET) {
		key.prefixlen = 32;
		*(__u32 *)key.addr = *(const __u32 *)addr;
		flags = bpf_map_lookup_elem(&km_nodeinfo, &key);
		return flags && (*flags & KM_NODEINFO_V4);
	}
	key.prefixlen = 128;
	__builtin_memcpy(key.addr, addr, 16);
	flags = bpf_map_lookup_elem(&km_nodeinfo, &key);
	return flags && (*flags & KM_NODEINFO_V6);
}

#endif
