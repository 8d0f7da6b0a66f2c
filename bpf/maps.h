/* BPF maps shared by the Kmesh IPsec TC programs. All are pinned by name under <bpffs root>/map/, so both
 * objects (and a restarted daemon) open the same instances.
 *
 * km_nodeinfo (LPM trie, named and keyed as Kmesh pins it): key {u32 prefixlen; u8 addr[16]}, address bytes in
 * network order, IPv4 in the first 4 bytes and prefixlen counting only the address's own bits (10.244.1.0/24 ->
 * prefixlen 24), the layout Kmesh itself writes. The value says for which families the prefix lies inside a remote node's pod
 * CIDR (KM_NODEINFO_V4 / KM_NODEINFO_V6): because IPv4 and IPv6 share the trie, an IPv6 address can match an
 * IPv4 key with the same leading bytes (2001::/16 and 32.1.0.0/16 are the same key). The userspace writer
 * computes each key's flags as "covered by a remote CIDR of that family", so the longest match always
 * answers correctly for the family of the packet being looked up.
 *
 * km_ipsec_peers (hash): key {u8 addr[16]; u32 family} = a remote node's underlay address (IPv4 in the first
 * 4 bytes, family AF_INET/AF_INET6), value u32 peer id 1..65535 (goes to mark bits 16-31 on its ESP). 32,768
 * entries, allocated as used: a 5,000-node dual-stack cluster has 10,000 underlay addresses, and the room above
 * that takes a second address per family or a whole cluster's nodes being replaced by new ones (old and new
 * addresses desired at once). Was 8,192 preallocated; a pin of that definition is migrated at load
 * (src/datapath/map-migration.ts).
 *
 * km_ipsec_stats (per-CPU array): packet counters indexed by enum km_stat.
 *
 * km_ipsec_config (array, one value struct km_config): settings the programs read, written by userspace only
 * (the datapath's setMssClamp / setStrictMode). All zero = no MSS clamping, strict ingress off.
 *
 * km_local_pods (hash): key struct km_peer_key = the address of a Kmesh-managed pod on this node, value u32 1.
 * km_pod_peers (LPM trie, key struct km_lpm_key): a remote node's pod CIDR -> that peer's id (as in
 * km_ipsec_peers), to name the peer whose pod CIDR a plaintext packet claims to come from. IPv4 CIDRs are
 * written IPv4-mapped (::ffff:a.b.c.d, prefixlen 96 + their own), so the families never share a key.
 * km_plaintext (per-CPU hash): key struct km_plaintext_key {peer id, strict mode in force} -> packets: plaintext
 * from a remote pod CIDR to a managed local pod that reached the underlay's ingress (tc_mark_decrypt). Both
 * written by userspace only, except km_plaintext, which only the program writes.
 *
 * km_tc_attach (hash): registry of our TC attachments, written by userspace only, so that a restarted
 * daemon can find (and detach) exactly its own filters/links. Programs never read it. */
#ifndef KMESH_MAPS_H
#define KMESH_MAPS_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#define KM_NODEINFO_V4 1u
#define KM_NODEINFO_V6 2u

struct km_lpm_key {
	__u32 prefixlen;
	__u8 addr[16];
};

struct km_peer_key {
	__u8 addr[16];
	__u32 family;
};

enum km_stat {
	KM_STAT_ENC_MARKED = 0,   /* tc_mark_encrypt: destination in a remote pod CIDR, marked 0xe0 */
	KM_STAT_ENC_PASSED,       /* tc_mark_encrypt: IP packet to elsewhere, untouched */
	KM_STAT_ENC_UNPARSED,     /* tc_mark_encrypt: non-IP or truncated, untouched */
	KM_STAT_DEC_ESP_PEER,     /* tc_mark_decrypt: ESP from a known peer, given its inbound mark */
	KM_STAT_DEC_ESP_UNKNOWN,  /* tc_mark_decrypt: ESP from an unknown source, left for XFRM to refuse */
	KM_STAT_DEC_KEPT,         /* tc_mark_decrypt: decrypted packet (0xd0, source in a remote pod CIDR) kept */
	KM_STAT_DEC_CLEARED,      /* tc_mark_decrypt: 0xd0 on a packet that was not decrypted by us, cleared */
	KM_STAT_DEC_PASSED,       /* tc_mark_decrypt: anything else, untouched */
	KM_STAT_ENC_MSS_CLAMPED,  /* tc_mark_encrypt: a marked TCP SYN / SYN-ACK whose MSS option was lowered */
	KM_STAT_DEC_PLAINTEXT_DROPPED, /* tc_mark_decrypt: plaintext from a peer's pod CIDR, strict enforce: dropped */
	KM_STAT_MAX,
};

/* The largest TCP MSS a SYN / SYN-ACK that will be encrypted may announce, per inner family, so that a full
 * segment plus the ESP tunnel overhead fits the underlay MTU (src/model/esp-overhead.ts computes them);
 * 0 = do not clamp that family. */
struct km_config {
	__u16 mss4;
	__u16 mss6;
	__u32 strict; /* enum km_strict */
};

/* Strict ingress: what tc_mark_decrypt does with plaintext from a peer's pod CIDR to a managed local pod. It is
 * counted in every mode (continuous evidence of a plaintext path), and dropped only in enforce. */
enum km_strict {
	KM_STRICT_OFF = 0,
	KM_STRICT_AUDIT = 1,
	KM_STRICT_ENFORCE = 2,
};

struct km_plaintext_key {
	__u32 peer; /* peer id from km_pod_peers; 0 = a remote pod CIDR no peer id is known for */
	__u32 mode; /* enum km_strict in force when the packet was seen */
};

struct km_attach_key {
	__u64 netns_ino;
	__u32 ifindex;
	__u32 kind; /* 1 = encrypt, 2 = decrypt */
};

struct km_attach_val {
	__u32 mode; /* 1 = clsact filter, 2 = TCX link (pinned under tc/) */
	__u32 prog_id;
	__u32 handle;   /* clsact only */
	__u32 priority; /* clsact only */
	char ifname[16];
	char netns[112]; /* netns path given at attach time ("" = the daemon's own) */
};

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__type(key, struct km_lpm_key);
	__type(value, __u32);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 16384);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} km_nodeinfo SEC(".maps");

/* Set from outside only to build the previous definition (8192, preallocated) for the migration test,
 * test/host/datapath-map-migration.test.ts. */
#ifndef KM_IPSEC_PEERS_MAX
#define KM_IPSEC_PEERS_MAX 32768
#define KM_IPSEC_PEERS_FLAGS BPF_F_NO_PREALLOC
#endif

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, struct km_peer_key);
	__type(value, __u32);
	__uint(map_flags, KM_IPSEC_PEERS_FLAGS);
	__uint(max_entries, KM_IPSEC_PEERS_MAX);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} km_ipsec_peers SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, __u64);
	__uint(max_entries, KM_STAT_MAX);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} km_ipsec_stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, struct km_config);
	__uint(max_entries, 1);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} km_ipsec_config SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, struct km_peer_key);
	__type(value, __u32);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 65536);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} km_local_pods SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__type(key, struct km_lpm_key);
	__type(value, __u32);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 16384);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} km_pod_peers SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__type(key, struct km_plaintext_key);
	__type(value, __u64);
	__uint(max_entries, 16384);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} km_plaintext SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, struct km_attach_key);
	__type(value, struct km_attach_val);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 65536);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} km_tc_attach SEC(".maps");

static __always_inline void km_count(__u32 stat)
{
	__u64 *n = bpf_map_lookup_elem(&km_ipsec_stats, &stat);
	if (n)
		*n += 1;
}

#endif
