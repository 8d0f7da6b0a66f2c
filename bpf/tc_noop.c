// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* tc_noop: an empty TC program, the baseline of `npm run bench:bpf` (the marking programs' cost is measured
 * as their time per packet minus this one's, in the same run). Not part of the datapath. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#define TC_ACT_UNSPEC (-1)

SEC("tc")
int tc_noop(struct __sk_buff *skb)
{
	return TC_ACT_UNSPEC;
}

char _license[] SEC("license") = "Dual BSD/GPL";
