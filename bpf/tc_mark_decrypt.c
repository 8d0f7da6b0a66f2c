// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* tc_mark_decrypt: TC ingress of the node's underlay interface(s).
 *  - ESP whose outer source is a known peer (km_ipsec_peers) gets id<<16 | 0xd0 in bits 16-31 and 0-7, the
 *    value that peer's own inbound SA matches, one inbound SA per peer; bits 8-15 are kept.
 *  - ESP from an unknown source is left to XFRM (which finds no SA); a 0xd0 type byte on it is cleared.
 *  - After decryption XFRM re-injects the inner packet on the same device with the SA's output-mark 0xd0.
 *    A non-ESP packet carrying 0xd0 is kept only if its source is in a remote node's pod CIDR (it came out
 *    of one of our SAs); any other 0xd0 is plaintext impersonating decrypted traffic and the type byte is
 *    cleared, so it cannot satisfy an inbound policy that expects decrypted packets.
 *  - Everything else, and anything unparseable that does not carry 0xd0, is untouched.
 * Never drops: returns TC_ACT_UNSPEC (= TCX_NEXT) so other tools' filters after ours still run. */
#include "marks.h"
#include "parse.h"

#define TC_ACT_UNSPEC (-1)
#define KM_IPPROTO_ESP 50

static __always_inline __u32 km_peer_id(const struct km_l3 *l3)
{
	struct km_peer_key key = {};
	__u32 *id;

	key.family = l3->family;
	if (l3->family == KM_AF_INET)
		*(__u32 *)key.addr = l3->ip4->saddr;
	else
		__builtin_memcpy(key.addr, &l3->ip6->saddr, 16);
	id = bpf_map_lookup_elem(&km_ipsec_peers, &key);
	return id ? *id : 0;
}

SEC("tc")
int tc_mark_decrypt(struct __sk_buff *skb)
{
	struct km_l3 l3 = {};
	__u32 mark = KM_MARK_GET(skb);
	int decrypted = (mark & KM_MARK_TYPE_MASK) == KM_MARK_DECRYPT;

	if (km_parse(skb, &l3)) {
		if (decrypted) {
			KM_MARK_SET(skb, mark & ~KM_MARK_TYPE_MASK);
			km_count(KM_STAT_DEC_CLEARED);
		} else {
			km_count(KM_STAT_DEC_PASSED);
		}
		return TC_ACT_UNSPEC;
	}
	if (l3.proto == KM_IPPROTO_ESP) {
		__u32 id = km_peer_id(&l3) & KM_PEER_ID_MAX;
		if (id) {
			KM_MARK_SET(skb, (mark & ~KM_MARK_INBOUND_MASK) | (id << KM_PEER_ID_SHIFT) | KM_MARK_DECRYPT);
			km_count(KM_STAT_DEC_ESP_PEER);
		} else {
			if (decrypted)
				KM_MARK_SET(skb, mark & ~KM_MARK_TYPE_MASK);
			km_count(KM_STAT_DEC_ESP_UNKNOWN);
		}
		return TC_ACT_UNSPEC;
	}
	if (!decrypted) {
		km_count(KM_STAT_DEC_PASSED);
		return TC_ACT_UNSPEC;
	}
	if (km_in_remote_cidr(&l3, 1)) {
		km_count(KM_STAT_DEC_KEPT);
	} else {
		KM_MARK_SET(skb, mark & ~KM_MARK_TYPE_MASK);
		km_count(KM_STAT_DEC_CLEARED);
	}
	return TC_ACT_UNSPEC;
}

char _license[] SEC("license") = "Dual BSD/GPL";
