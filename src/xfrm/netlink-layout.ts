// Byte layouts of the linux/xfrm.h structs the XFRM codec writes and reads (x86_64, little-endian), one named
// table per kernel struct with its C declaration beside it: field offsets, and SIZE = sizeof(struct). The TypeScript
// encoder and decoder (netlink-codec.ts) both use these tables; the native encoder (native/xfrm_encode.cc) fills the
// kernel's own structs and exports offsetof/sizeof of them as `xfrmLayout`, which test/unit/xfrm-layout.test.ts
// compares with this file field by field. A nested struct is its own table: the SPI of an SA is at
// XFRM_USERSA_INFO.id + XFRM_ID.spi.

/**
 * xfrm_address_t is a 16-byte union (__be32 a4 | __be32 a6[4] | struct in6_addr); IPv4 uses its first 4 bytes.
 * struct xfrm_selector { xfrm_address_t daddr; xfrm_address_t saddr; __be16 dport, dport_mask, sport, sport_mask;
 * __u16 family; __u8 prefixlen_d, prefixlen_s, proto; int ifindex; __kernel_uid32_t user; };
 */
export const XFRM_SELECTOR = {
  daddr: 0,
  saddr: 16,
  dport: 32,
  dport_mask: 34,
  sport: 36,
  sport_mask: 38,
  family: 40,
  prefixlen_d: 42,
  prefixlen_s: 43,
  proto: 44,
  ifindex: 48,
  user: 52,
  SIZE: 56,
} as const;

/** struct xfrm_id { xfrm_address_t daddr; __be32 spi; __u8 proto; }; */
export const XFRM_ID = { daddr: 0, spi: 16, proto: 20, SIZE: 24 } as const;

/**
 * struct xfrm_lifetime_cfg { __u64 soft_byte_limit, hard_byte_limit, soft_packet_limit, hard_packet_limit;
 * __u64 soft_add_expires_seconds, hard_add_expires_seconds, soft_use_expires_seconds, hard_use_expires_seconds; };
 * The four limits come first: "infinite" (all ones) is written over soft_byte_limit..soft_add_expires_seconds.
 */
export const XFRM_LIFETIME_CFG = {
  soft_byte_limit: 0,
  hard_byte_limit: 8,
  soft_packet_limit: 16,
  hard_packet_limit: 24,
  soft_add_expires_seconds: 32,
  hard_add_expires_seconds: 40,
  soft_use_expires_seconds: 48,
  hard_use_expires_seconds: 56,
  SIZE: 64,
} as const;

/**
 * struct xfrm_usersa_info { struct xfrm_selector sel; struct xfrm_id id; xfrm_address_t saddr;
 * struct xfrm_lifetime_cfg lft; struct xfrm_lifetime_cur curlft; struct xfrm_stats stats; __u32 seq; __u32 reqid;
 * __u16 family; __u8 mode; __u8 replay_window; __u8 flags; };
 */
export const XFRM_USERSA_INFO = {
  sel: 0,
  id: 56,
  saddr: 80,
  lft: 96,
  curlft: 160,
  stats: 192,
  seq: 204,
  reqid: 208,
  family: 212,
  mode: 214,
  replay_window: 215,
  flags: 216,
  SIZE: 224,
} as const;

/** struct xfrm_usersa_id { xfrm_address_t daddr; __be32 spi; __u16 family; __u8 proto; }; */
export const XFRM_USERSA_ID = { daddr: 0, spi: 16, family: 20, proto: 22, SIZE: 24 } as const;

/**
 * struct xfrm_userpolicy_info { struct xfrm_selector sel; struct xfrm_lifetime_cfg lft;
 * struct xfrm_lifetime_cur curlft; __u32 priority; __u32 index; __u8 dir; __u8 action; __u8 flags; __u8 share; };
 */
export const XFRM_USERPOLICY_INFO = {
  sel: 0,
  lft: 56,
  curlft: 120,
  priority: 152,
  index: 156,
  dir: 160,
  action: 161,
  flags: 162,
  share: 163,
  SIZE: 168,
} as const;

/** struct xfrm_userpolicy_id { struct xfrm_selector sel; __u32 index; __u8 dir; }; */
export const XFRM_USERPOLICY_ID = { sel: 0, index: 56, dir: 60, SIZE: 64 } as const;

/**
 * struct xfrm_user_tmpl { struct xfrm_id id; __u16 family; xfrm_address_t saddr; __u32 reqid; __u8 mode;
 * __u8 share; __u8 optional; __u32 aalgos; __u32 ealgos; __u32 calgos; };
 */
export const XFRM_USER_TMPL = {
  id: 0,
  family: 24,
  saddr: 28,
  reqid: 44,
  mode: 48,
  share: 49,
  optional: 50,
  aalgos: 52,
  ealgos: 56,
  calgos: 60,
  SIZE: 64,
} as const;

/** struct xfrm_algo_aead { char alg_name[64]; unsigned int alg_key_len (bits); unsigned int alg_icv_len; char alg_key[]; }; */
export const XFRM_ALGO_AEAD = { alg_name: 0, alg_key_len: 64, alg_icv_len: 68, alg_key: 72, SIZE: 72 } as const;

/** Length of alg_name, NUL included. */
export const XFRM_ALG_NAME_BYTES = 64;

/**
 * struct xfrm_replay_state_esn { unsigned int bmp_len (32-bit words); __u32 oseq, seq, oseq_hi, seq_hi;
 * __u32 replay_window (packets); __u32 bmp[]; };
 */
export const XFRM_REPLAY_STATE_ESN = {
  bmp_len: 0,
  oseq: 4,
  seq: 8,
  oseq_hi: 12,
  seq_hi: 16,
  replay_window: 20,
  bmp: 24,
  SIZE: 24,
} as const;

/** struct xfrm_mark { __u32 v; __u32 m; }; (value, mask) */
export const XFRM_MARK = { v: 0, m: 4, SIZE: 8 } as const;

/** struct xfrm_userpolicy_type { __u8 type; __u16 reserved1; __u8 reserved2; }; */
export const XFRM_USERPOLICY_TYPE = { type: 0, SIZE: 6 } as const;

/** Every table above by its kernel struct name, as the native addon's `xfrmLayout` names them. */
export const XFRM_LAYOUTS = {
  xfrm_selector: XFRM_SELECTOR,
  xfrm_id: XFRM_ID,
  xfrm_lifetime_cfg: XFRM_LIFETIME_CFG,
  xfrm_usersa_info: XFRM_USERSA_INFO,
  xfrm_usersa_id: XFRM_USERSA_ID,
  xfrm_userpolicy_info: XFRM_USERPOLICY_INFO,
  xfrm_userpolicy_id: XFRM_USERPOLICY_ID,
  xfrm_user_tmpl: XFRM_USER_TMPL,
  xfrm_algo_aead: XFRM_ALGO_AEAD,
  xfrm_replay_state_esn: XFRM_REPLAY_STATE_ESN,
  xfrm_mark: XFRM_MARK,
  xfrm_userpolicy_type: XFRM_USERPOLICY_TYPE,
} as const;
