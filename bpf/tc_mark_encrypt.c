// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* tc_mark_encrypt: TC ingress of the host-side veth of a Kmesh-managed pod (= the pod's egress). A packet whose
 * destination lies in a remote Kmesh node's pod CIDR (km_nodeinfo) gets the encrypt type byte 0xe0; its other
 * mark bits are kept (see marks.h for why the type byte is replaced rather than OR-ed). Everything else is
 * untouched. A TCP SYN or SYN-ACK on that hit path also has its MSS option clamped (mss_clamp.h) so that full
 * segments fit the underlay MTU after ESP encapsulation. Never drops: returns TC_ACT_UNSPEC (= TCX_NEXT), so filters of other tools after ours still run
 * and, when none follow, the packet continues as with TC_ACT_OK. */
#include "marks.h"
#include "parse.h"
#include "mss_clamp.h"

#define TC_ACT_UNSPEC (-1)

SEC("tc")
int tc_mark_encrypt(struct __sk_buff *skb)
{
	struct km_l3 l3 = {};

	if (km_parse(skb, &l3)) {
		km_count(KM_STAT_ENC_UNPARSED);
		return TC_ACT_UNSPEC;
	}
	if (km_in_remote_cidr(&l3, 0)) {
		KM_MARK_SET(skb, (KM_MARK_GET(skb) & ~KM_MARK_TYPE_MASK) | KM_MARK_ENCRYPT);
		km_count(KM_STAT_ENC_MARKED);
		if (km_clamp_mss(skb, &l3))
			km_count(KM_STAT_ENC_MSS_CLAMPED);
	} else {
		km_count(KM_STAT_ENC_PASSED);
	}
	return TC_ACT_UNSPEC;
}

char _license[] SEC("license") = "Dual BSD/GPL";
