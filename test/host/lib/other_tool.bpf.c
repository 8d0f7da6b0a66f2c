// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* "Another tool" for the datapath tests: a TC program that runs before ours and stamps the IPsec decrypted
 * type byte 0xd0 on every frame except parseable ESP, standing in for plaintext that arrives claiming to be
 * decrypted (marks set in another netns are scrubbed on the veth, so a test cannot send such a packet).
 * Returns TC_ACT_UNSPEC so the next program (ours) still runs. Compiled by the tests at run time. */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

SEC("tc")
int kmt_other_tool(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip = (void *)(eth + 1);

	if ((void *)(ip + 1) <= end && eth->h_proto == bpf_htons(ETH_P_IP) && ip->protocol == 50)
		return -1;
	*(volatile __u32 *)&skb->mark = (*(volatile __u32 *)&skb->mark & ~0xffu) | 0xd0u;
	return -1;
}

char _license[] SEC("license") = "Dual BSD/GPL";
