/* The remote-pod-CIDR index: a compiled, read-only copy of km_nodeinfo that answers "is this address inside a
 * remote Kmesh node's pod CIDR?" in a few array loads instead of an LPM-trie walk (the trie costs ~45-60 ns per
 * hit with 1,000 CIDRs; this walk costs a handful of ns). km_nodeinfo stays the authoritative map, written
 * first and in Kmesh's layout for tracing tools; when no index is installed (fresh maps, or one that would not
 * fit its capacity) the programs fall back to the trie, so the answer never depends on the index existing.
 *
 * Layout (built by src/datapath/cidr-index.ts, which mirrors these numbers):
 *  - km_cidr_index: ARRAY_OF_MAPS with one slot, pinned by name. Userspace fills a complete new inner map,
 *    freezes it and swaps it into the slot with one update, so a program sees either the old or the new index,
 *    never a half-written one; the kernel frees the old inner map after an RCU grace period.
 *  - inner map: ARRAY with one value, a pool of 2 MiB: KM_CIDR_NODES nodes of 512 bytes, then KM_CIDR_RECORDS
 *    tail records of 32 bytes. Node 0 is the header (struct km_cidr_head), node 1 is never used. Every other
 *    node is a 256-way branch on one address byte, entries u16: 0 = not remote, 1 = remote (the whole range
 *    below this entry lies inside a remote CIDR), 2..0xfff = continue at node n with the next byte,
 *    0x8000 | r (r < 0x4000) = tail record r: the subtree holds a single CIDR, and the rest of the address must
 *    match its remaining bits (one masked 128-bit compare instead of a chain of one-entry nodes),
 *    0xc000 | n = the same for a CIDR whose remaining n bits are all zero, answered without loading a record
 *    (a cluster's per-node /64s end so). A CIDR ending inside a byte is expanded over the entries it covers.
 *    Identical nodes and records are stored once.
 *  - Per family, the header holds the root and a skip: leading address bytes every CIDR of that family shares
 *    (cluster pod CIDRs usually come from one range, e.g. fd00:10:244::/56). An address whose first `skip` bytes
 *    differ from the prefix is not remote; otherwise the walk starts at byte `skip` (at most 2 for IPv4, 14 for
 *    IPv6). The root is wide: 256 consecutive nodes read as one 65,536-way branch on bytes `skip` and `skip + 1`
 *    (entry root * 256 + those two bytes), so every walk takes one dependent load less than with a byte-wide root;
 *    with 10,000 cluster CIDRs a /24 or /64 is one load and a tail record. */
#ifndef KMESH_CIDR_INDEX_H
#define KMESH_CIDR_INDEX_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#define KM_CIDR_POOL_NODES 4096 /* 512-byte slots of the pool; node numbers are masked with this - 1 */
#define KM_CIDR_NODES 3072      /* slots used for nodes; the last 1024 hold the tail records */
#define KM_CIDR_RECORDS 16384
#define KM_CIDR_MAGIC 0x4b4d4333u /* "KMC3": index format 3 (wide roots); an older index is not walked */
#define KM_CIDR_EMPTY 0
#define KM_CIDR_FULL 1
#define KM_CIDR_RECORD 0x8000u
#define KM_CIDR_ZERO_TAIL 0x4000u

/* A subtree holding one CIDR: the rest of the address (shifted so its next byte is on top) must equal `value`
 * under `mask`. Halves are the big-endian halves converted to host order, most significant first. */
struct km_cidr_record {
	__u64 value[2];
	__u64 mask[2];
};

struct km_cidr_head {
	__u32 magic;
	__u32 v4_root;   /* first node of the wide root on the two IPv4 bytes after the skip; 0 = no IPv4 CIDR */
	__u32 v4_skip;   /* 0..2 */
	__u32 v4_prefix; /* the skipped bytes, network order, rest zero */
	__u32 v4_mask;   /* 0xff for every skipped byte, network order */
	__u32 v6_root;
	__u32 v6_skip;   /* 0..14 */
	__u32 nodes;     /* nodes in use, header included (for userspace's stats) */
	__u64 v6_prefix[2]; /* the skipped bytes as two big-endian halves converted to host order */
	__u64 v6_mask[2];
	__u8 fingerprint[32]; /* SHA-256 of the index contents, for userspace's "already installed?" check */
	__u32 records;        /* tail records in use (for userspace's stats) */
};

/* The whole index is the one value of its inner map: node n's entries are e[n * 256 .. n * 256 + 255] (node 0
 * holds the header), the records fill the last quarter. One lookup gives the walk a base pointer; every level is
 * then a masked offset and one load. */
struct km_cidr_pool {
	union {
		__u16 e[KM_CIDR_POOL_NODES * 256];
		struct {
			__u8 nodes[KM_CIDR_NODES * 512];
			struct km_cidr_record rec[KM_CIDR_RECORDS];
		};
	};
};

/* Sizes rather than types: clang emits the value struct reached only through this template as a BTF forward
 * declaration, whose size libbpf cannot determine. */
struct km_cidr_pool_map {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, sizeof(struct km_cidr_pool));
	__uint(max_entries, 1);
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__type(key, __u32);
	__uint(max_entries, 1);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
	__array(values, struct km_cidr_pool_map);
} km_cidr_index SEC(".maps");

/* Tail entry `e` (a record or a zero tail): does the rest of the address (its next byte on top of `hi`) match? */
static __always_inline int km_cidr_record_match(const struct km_cidr_pool *pool, __u16 e, __u64 hi, __u64 lo)
{
	const struct km_cidr_record *r;

	if (e & KM_CIDR_ZERO_TAIL) {
		__u32 n = e & 0xff; /* 1..128 bits, all zero; no load */

		if (n <= 64)
			return (hi >> (64 - n)) == 0;
		return hi == 0 && (lo >> (128 - n)) == 0;
	}
	r = &pool->rec[e & (KM_CIDR_RECORDS - 1)];
	return (hi & r->mask[0]) == r->value[0] && (lo & r->mask[1]) == r->value[1];
}

/* Follows the index from node `idx` over the bytes of `hi:lo` (most significant first), at most `levels`
 * (a constant: 2 or 14) bytes. Returns 1 remote / 0 not remote. A well-formed index ends the walk at a 0/1 entry
 * or a record within the address's remaining bytes; a malformed one (too deep) answers 0. */
static __always_inline int km_cidr_walk(const struct km_cidr_pool *pool, __u32 idx, __u64 hi, __u64 lo,
					const int levels)
{
#pragma unroll
	for (int i = 0; i < levels; i++) {
		__u32 off = ((idx & (KM_CIDR_POOL_NODES - 1)) << 8) + (__u32)(hi >> 56);
		__u16 e;

		/* Re-mask after a barrier clang cannot see through: the 6.1 verifier loses the bounds of the sum
		 * above (clang emits it as an OR), and an unbounded offset into the pool is refused. */
		asm volatile("" : "+r"(off));
		e = pool->e[off & (KM_CIDR_POOL_NODES * 256 - 1)];
		if (e <= KM_CIDR_FULL)
			return e;
		hi = (hi << 8) | (lo >> 56);
		lo <<= 8;
		if (e & KM_CIDR_RECORD)
			return km_cidr_record_match(pool, e, hi, lo);
		idx = e;
	}
	return 0;
}

/* The wide root at node `root`: one load on the two leading bytes of `hi`, then the byte walk over at most
 * `levels` more bytes (a constant: 2 or 14). */
static __always_inline int km_cidr_walk_wide(const struct km_cidr_pool *pool, __u32 root, __u64 hi, __u64 lo,
					     const int levels)
{
	__u32 off = ((root & (KM_CIDR_POOL_NODES - 1)) << 8) + (__u32)(hi >> 48);
	__u16 e;

	asm volatile("" : "+r"(off)); /* as in km_cidr_walk */
	e = pool->e[off & (KM_CIDR_POOL_NODES * 256 - 1)];
	if (e <= KM_CIDR_FULL)
		return e;
	hi = (hi << 16) | (lo >> 48);
	lo <<= 16;
	if (e & KM_CIDR_RECORD)
		return km_cidr_record_match(pool, e, hi, lo);
	return km_cidr_walk(pool, e, hi, lo, levels);
}

/* 1 = inside a remote CIDR, 0 = not, -1 = no index installed (the caller asks km_nodeinfo). `addr` points at
 * the address in the packet (4 or 16 bytes, network order). */
static __always_inline int km_cidr_index_lookup(__u32 family_is_v4, const void *addr)
{
	__u32 zero = 0;
	void *inner = bpf_map_lookup_elem(&km_cidr_index, &zero);
	const struct km_cidr_pool *pool;
	const struct km_cidr_head *h;

	if (!inner)
		return -1;
	pool = bpf_map_lookup_elem(inner, &zero);
	if (!pool)
		return -1;
	h = (const struct km_cidr_head *)pool;
	if (h->magic != KM_CIDR_MAGIC)
		return -1;
	if (family_is_v4) {
		__u32 a = *(const __u32 *)addr;
		__u32 skip = h->v4_skip & 3;

		if (!h->v4_root || (a & h->v4_mask) != h->v4_prefix)
			return 0;
		return km_cidr_walk_wide(pool, h->v4_root, (__u64)(bpf_ntohl(a) << (skip * 8)) << 32, 0, 2);
	} else {
		__u64 hi = bpf_be64_to_cpu(((const __u64 *)addr)[0]);
		__u64 lo = bpf_be64_to_cpu(((const __u64 *)addr)[1]);
		__u32 skip = h->v6_skip & 15;

		if (!h->v6_root || (hi & h->v6_mask[0]) != h->v6_prefix[0] || (lo & h->v6_mask[1]) != h->v6_prefix[1])
			return 0;
		if (skip >= 8) {
			hi = lo << ((skip - 8) * 8);
			lo = 0;
		} else if (skip > 0) {
			hi = (hi << (skip * 8)) | (lo >> (64 - skip * 8));
			lo <<= skip * 8;
		}
		return km_cidr_walk_wide(pool, h->v6_root, hi, lo, 14);
	}
}

#endif
