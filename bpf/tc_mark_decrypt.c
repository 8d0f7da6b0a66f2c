// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* tc_mark_decrypt: TC ingress of the node's underlay interface(s).
 *  - ESP whose outer source is a known peer (km_ipsec_peers) gets id<<16 | 0xd0 in bits 16-31 and 0-7, the
 *    value that peer's own inbound SA matches, one inbound SA per peer; bits 8-15 are kept.
 *  - ESP from an unknown source is left to XFRM (which finds no SA); a 0xd0 type byte on it is cleared.
 *  - After decryption XFRM re-injects the inner packet on the same device with the SA's output-mark 0xd0.
 *    A non-ESP packet carrying 0xd0 is kept only if its source is in a remote node's pod CIDR (it came out
 *    of one of our SAs); any other 0xd0 is plaintext impersonating decrypted traffic and the type byte is
 *    cleared, so it cannot satisfy an inbound policy that expects decrypted packets.
 *  - Plaintext (not ESP, not decrypted) whose destination is a managed local pod (km_local_pods) and whose
 *    source lies in a remote node's pod CIDR came from a peer's pod around our SAs: it is counted per peer
 *    and strict mode in km_plaintext, and dropped when strict mode is enforce (the only drop).
 *  - Everything else, and anything unparseable that does not carry 0xd0, is untouched.
 * Otherwise returns TC_ACT_UNSPEC (= TCX_NEXT) so other tools' filters after ours still run. */
#include "marks.h"
#include "parse.h"

#define TC_ACT_UNSPEC (-1)
#define TC_ACT_SHOT 2
#define KM_IPPROTO_ESP 50

/* Plaintext from a peer's pod CIDR to a managed local pod? Counts it and returns 1 when it must be dropped. */
static __always_inline int km_plaintext_from_peer(const struct km_l3 *l3)
{
	struct km_peer_key pod = {};
	struct km_lpm_key src = {};
	struct km_plaintext_key key = {};
	struct km_config *cfg;
	__u32 zero = 0, *peer;
	__u64 one = 1, *n;

	pod.family = l3->family;
	if (l3->family == KM_AF_INET)
		*(__u32 *)pod.addr = l3->ip4->daddr;
	else
		__builtin_memcpy(pod.addr, &l3->ip6->daddr, 16);
	if (!bpf_map_lookup_elem(&km_local_pods, &pod))
		return 0;
	if (!km_in_remote_cidr(l3, 1))
		return 0;
	src.prefixlen = 128;
	if (l3->family == KM_AF_INET) {
		/* IPv4-mapped (::ffff:a.b.c.d), as userspace writes IPv4 keys of this trie. */
		src.addr[10] = 0xff;
		src.addr[11] = 0xff;
		*(__u32 *)&src.addr[12] = l3->ip4->saddr;
	} else {
		__builtin_memcpy(src.addr, &l3->ip6->saddr, 16);
	}
	peer = bpf_map_lookup_elem(&km_pod_peers, &src);
	cfg = bpf_map_lookup_elem(&km_ipsec_config, &zero);
	key.peer = peer ? *peer : 0;
	key.mode = cfg ? cfg->strict : KM_STRICT_OFF;
	n = bpf_map_lookup_elem(&km_plaintext, &key);
	if (n)
		*n += 1;
	else
		bpf_map_update_elem(&km_plaintext, &key, &one, BPF_NOEXIST);
	return key.mode == KM_STRICT_ENFORCE;
}

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
		if (km_plaintext_from_peer(&l3)) {
			km_count(KM_STAT_DEC_PLAINTEXT_DROPPED);
			return TC_ACT_SHOT;
		}
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
