/* Skb mark layout shared by tc_mark_encrypt / tc_mark_decrypt; mirrors src/model/marks.ts number for number.
 *
 *   bits  0-7   IPsec type byte: 0xe0 = "encrypt this", 0xd0 = "was decrypted" (Kmesh's values).
 *   bits  8-15  never touched: other datapaths live here (kube-proxy 0x4000 masquerade, 0x8000 drop).
 *   bits 16-31  per-peer id, set by tc_mark_decrypt on ESP from a known peer so that each peer's inbound SA
 *               (which matches id<<16 | 0xd0 under mask 0xffff00ff) is distinct, so three or more nodes
 *               work (Kmesh gives every peer the same inbound SA and decrypts only one). The SA's
 *               output-mark rewrites the masked field to plain 0xd0, so the id never outlives decryption.
 *
 * Why overwrite the type byte and not OR it in: OR-ing 0xe0 into a byte that already holds 0xd0 would give
 * 0xf0, a value no XFRM policy matches, so a packet could escape both the encrypt and the decrypt rules.
 * Replacing only bits 0-7 (and 16-31 on inbound ESP) keeps every other tool's bits intact while making our
 * own field always hold exactly one of our values. */
#ifndef KMESH_MARKS_H
#define KMESH_MARKS_H

#define KM_MARK_TYPE_MASK 0x000000ffu
#define KM_MARK_ENCRYPT 0xe0u
#define KM_MARK_DECRYPT 0xd0u
#define KM_PEER_ID_SHIFT 16
#define KM_PEER_ID_MASK 0xffff0000u
#define KM_PEER_ID_MAX 0xffffu
#define KM_MARK_INBOUND_MASK (KM_PEER_ID_MASK | KM_MARK_TYPE_MASK)

/* skb->mark must be read and written as a whole u32: left alone, clang turns "replace the low byte" into a
 * one-byte store, which the verifier rejects for the context (invalid bpf_context access). */
#define KM_MARK_GET(skb) (*(volatile __u32 *)&(skb)->mark)
#define KM_MARK_SET(skb, v) (*(volatile __u32 *)&(skb)->mark = (v))

#endif
