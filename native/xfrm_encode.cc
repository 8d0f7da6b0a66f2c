// Native fast path of the XFRM netlink encoder (src/xfrm/netlink-codec.ts stays the reference). Mechanical only:
// it fills the kernel's own structs (linux/xfrm.h, linux/netlink.h: no offsets written out here) with the values the
// TypeScript codec writes through its named layout tables (src/xfrm/netlink-layout.ts) for the ops a full apply
// sends by the thousand -- addState (XFRM_MSG_NEWSA), addPolicy / updatePolicy
// (XFRM_MSG_NEWPOLICY / XFRM_MSG_UPDPOLICY) with IPv4 addresses -- reading each op's fields once through N-API.
// It decides nothing: every value a check of the TypeScript codec could refuse, every shape it does not cover
// (IPv6, other op kinds, an optional field that is neither absent nor an object, more than 8 templates) makes it
// stop, and the TypeScript codec encodes that op (or reports the precise error) before the next call resumes.
// Why: right after a daemon start the engine interprets the JS encoder and compiles it while it runs; on a
// single CPU (the kernel-test VM) that costs more than the kernel's own work for the same messages.
//
// JS: xfrmEncode(ops: XfrmOp[], start: number, end: number, seqs: Uint32Array, out: Uint8Array,
//                cursor: Uint32Array): number
//   Encodes ops[start..end) in order into out at cursor[0] (message i gets sequence number seqs[i - start]),
//   advances cursor[0] past each message written, and returns how many ops it encoded: fewer than end - start
//   when it reached an op it leaves to TypeScript or when out has no room for the next message.
// JS: xfrmLayout: { [struct name]: { [field]: offsetof, SIZE: sizeof } } for the structs of netlink-layout.ts,
//   taken from the kernel headers this addon was compiled against (test/unit/xfrm-layout.test.ts compares them).
#include <arpa/inet.h>
#include <linux/netlink.h>
#include <linux/xfrm.h>
#include <node_api.h>
#include <sys/socket.h>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "common.h"

namespace kmesh {
namespace {

constexpr uint16_t kFlags = NLM_F_REQUEST | NLM_F_ACK;  // as the TypeScript codec writes them
constexpr uint32_t kMaxReplayWindow = 128 * 32;          // XFRMA_REPLAY_ESN_MAX / 32 words of bitmap
constexpr uint32_t kLegacyReplayWindowMax = 32;          // the u8 replay_window's bitmap of xfrm_usersa_info
constexpr size_t kMaxTemplates = 8;
constexpr size_t kMaxKeyBytes = 512;
constexpr size_t kAlgNameBytes = sizeof(xfrm_algo_aead::alg_name);
constexpr size_t kMarkAttr = NLA_HDRLEN + sizeof(xfrm_mark);
constexpr size_t kU32Attr = NLA_HDRLEN + sizeof(uint32_t);
constexpr size_t kEsnAttr = NLA_HDRLEN + sizeof(xfrm_replay_state_esn);
constexpr size_t kMaxState = NLMSG_HDRLEN + sizeof(xfrm_usersa_info) + NLA_ALIGN(NLA_HDRLEN + sizeof(xfrm_algo_aead) +
                                                                                  kMaxKeyBytes) +
                             kEsnAttr + kMarkAttr + 2 * kU32Attr;
constexpr size_t kMaxPolicy =
    NLMSG_HDRLEN + sizeof(xfrm_userpolicy_info) + NLA_HDRLEN + kMaxTemplates * sizeof(xfrm_user_tmpl) + kMarkAttr;
constexpr size_t kMessageMax = 1024;  // NATIVE_ENCODE_ROOM in src/xfrm/netlink-addon.ts
static_assert(kMaxState <= kMessageMax && kMaxPolicy <= kMessageMax, "a message must fit the room the caller leaves");

// The property names read, created once per call.
enum Key {
  kKind, kState, kPolicy, kFamily, kSrc, kDst, kSpi, kProto, kReqid, kMode, kReplayWindow, kEsn, kAead, kName,
  kKey, kIcvBits, kMark, kOutputMark, kValue, kMask, kSelector, kPriority, kDir, kAction, kTemplates, kKeyCount
};
const char* const kKeyNames[kKeyCount] = {
    "kind", "state", "policy", "family", "src", "dst", "spi", "proto", "reqid", "mode", "replayWindow", "esn",
    "aead", "name", "key", "icvBits", "mark", "outputMark", "value", "mask", "selector", "priority", "dir",
    "action", "templates"};

struct Reader {
  napi_env env;
  napi_value keys[kKeyCount];

  bool Get(napi_value obj, Key k, napi_value* out) const {
    return napi_get_property(env, obj, keys[k], out) == napi_ok;
  }
  napi_valuetype Type(napi_value v) const {
    napi_valuetype t = napi_undefined;
    if (napi_typeof(env, v, &t) != napi_ok) return napi_undefined;
    return t;
  }
  // An integer in [0, max], as the codec's `v >>> 0 === v` / `(v & 0xff) === v` checks accept.
  // (napi_get_value_* refuse other types themselves: no napi_typeof round trip, one call less per field.)
  bool Uint(napi_value obj, Key k, double max, uint32_t* out) const {
    napi_value v;
    double d;
    if (!Get(obj, k, &v) || napi_get_value_double(env, v, &d) != napi_ok) return false;
    if (!(d >= 0 && d <= max) || std::floor(d) != d) return false;
    *out = static_cast<uint32_t>(d);
    return true;
  }
  // A string of at most cap - 1 UTF-8 bytes.
  bool Str(napi_value obj, Key k, char* buf, size_t cap, size_t* len) const {
    napi_value v;
    if (!Get(obj, k, &v) || napi_get_value_string_utf8(env, v, buf, cap, len) != napi_ok) return false;
    return *len + 1 < cap;  // a longer string was cut: leave it to TypeScript
  }
  // An optional object field: absent (undefined) or an object; anything else is left to TypeScript.
  bool Optional(napi_value obj, Key k, napi_value* out, bool* present) const {
    if (!Get(obj, k, out)) return false;
    napi_valuetype t = Type(*out);
    *present = t == napi_object;
    return t == napi_object || t == napi_undefined;
  }
  bool Object(napi_value obj, Key k, napi_value* out) const { return Get(obj, k, out) && Type(*out) == napi_object; }
};

// Dotted quad without leading zeros (the codec's IPv4 syntax); network order into out[0..4].
bool ParseIpv4(const char* s, size_t len, uint8_t* out) {
  int part = 0;
  unsigned value = 0;
  int digits = 0;
  for (size_t i = 0; i <= len; ++i) {
    char c = i < len ? s[i] : '.';
    if (c >= '0' && c <= '9') {
      if (digits > 0 && value == 0) return false;
      value = value * 10 + static_cast<unsigned>(c - '0');
      if (++digits > 3 || value > 255) return false;
    } else if (c == '.' && digits > 0 && part < 4) {
      out[part++] = static_cast<uint8_t>(value);
      value = 0;
      digits = 0;
    } else {
      return false;
    }
  }
  return part == 4;
}

// "a.b.c.d/len" (1-3 decimal digits, at most 32) or a bare address (/32); host bits must be zero.
bool ParseCidr4(const char* s, size_t len, uint8_t* out, uint8_t* prefix) {
  const char* slash = static_cast<const char*>(std::memchr(s, '/', len));
  size_t alen = slash ? static_cast<size_t>(slash - s) : len;
  if (!ParseIpv4(s, alen, out)) return false;
  unsigned plen = 32;
  if (slash) {
    size_t dlen = len - alen - 1;
    if (dlen < 1 || dlen > 3) return false;
    plen = 0;
    for (size_t i = 0; i < dlen; ++i) {
      char c = slash[1 + i];
      if (c < '0' || c > '9') return false;
      plen = plen * 10 + static_cast<unsigned>(c - '0');
    }
    if (plen > 32) return false;
  }
  uint32_t addr = (uint32_t{out[0]} << 24) | (uint32_t{out[1]} << 16) | (uint32_t{out[2]} << 8) | out[3];
  uint32_t host = plen == 32 ? 0 : (0xffffffffu >> plen);
  if (addr & host) return false;
  *prefix = static_cast<uint8_t>(plen);
  return true;
}

bool Address4(const Reader& r, napi_value obj, Key k, uint8_t* out) {
  char buf[64];
  size_t len;
  return r.Str(obj, k, buf, sizeof(buf), &len) && ParseIpv4(buf, len, out);
}

bool Cidr4(const Reader& r, napi_value obj, Key k, uint8_t* out, uint8_t* prefix) {
  char buf[64];
  size_t len;
  return r.Str(obj, k, buf, sizeof(buf), &len) && ParseCidr4(buf, len, out, prefix);
}

bool Family4(const Reader& r, napi_value obj) {
  uint32_t family;
  return r.Uint(obj, kFamily, 255, &family) && family == 4;
}

int ModeCode(const Reader& r, napi_value obj) {
  char buf[16];
  size_t len;
  if (!r.Str(obj, kMode, buf, sizeof(buf), &len)) return -1;
  if (len == 6 && std::memcmp(buf, "tunnel", 6) == 0) return XFRM_MODE_TUNNEL;
  if (len == 9 && std::memcmp(buf, "transport", 9) == 0) return XFRM_MODE_TRANSPORT;
  return -1;
}

// A kernel struct zero-filled, padding included (the bytes must equal the TypeScript codec's).
template <typename T>
T Zeroed() {
  T v;
  std::memset(&v, 0, sizeof v);
  return v;
}

// Copies a filled struct into the message at p; returns the position after it.
template <typename T>
uint8_t* Put(uint8_t* p, const T& v) {
  std::memcpy(p, &v, sizeof v);
  return p + sizeof v;
}

inline void Header(uint8_t* m, size_t len, uint16_t type, uint32_t seq) {
  auto h = Zeroed<nlmsghdr>();
  h.nlmsg_len = static_cast<uint32_t>(len);
  h.nlmsg_type = type;
  h.nlmsg_flags = kFlags;
  h.nlmsg_seq = seq;
  Put(m, h);
}

// An attribute header for `len` bytes (header included); returns where its payload goes.
inline uint8_t* Attr(uint8_t* p, uint16_t type, size_t len) {
  auto a = Zeroed<nlattr>();
  a.nla_len = static_cast<uint16_t>(len);
  a.nla_type = type;
  return Put(p, a);
}

// An attribute holding one struct; returns the position after it.
template <typename T>
uint8_t* PutAttr(uint8_t* p, uint16_t type, const T& v) {
  return Put(Attr(p, type, NLA_HDRLEN + sizeof v), v);
}

// Lifetime limits "infinite" (bytes and packets, soft and hard) as iproute2 sets them; times stay 0.
inline void InfiniteLimits(xfrm_lifetime_cfg& lft) {
  lft.soft_byte_limit = lft.hard_byte_limit = XFRM_INF;
  lft.soft_packet_limit = lft.hard_packet_limit = XFRM_INF;
}

inline xfrm_mark MarkOf(uint32_t value, uint32_t mask) {
  auto m = Zeroed<xfrm_mark>();
  m.v = value;
  m.m = mask;
  return m;
}

// Optional {value, mask} of u32s.
bool Mark(const Reader& r, napi_value obj, Key k, bool* present, uint32_t* value, uint32_t* mask) {
  napi_value m;
  if (!r.Optional(obj, k, &m, present)) return false;
  if (!*present) return true;
  return r.Uint(m, kValue, 4294967295.0, value) && r.Uint(m, kMask, 4294967295.0, mask);
}

// XFRM_MSG_NEWSA into m (zeroed); returns the length, 0 to leave the op to TypeScript.
size_t EncodeState(const Reader& r, napi_value state, uint32_t seq, uint8_t* m) {
  uint8_t dst[4], src[4];
  uint32_t spi, proto, reqid, window;
  if (!Family4(r, state) || !Address4(r, state, kDst, dst) || !Address4(r, state, kSrc, src)) return 0;
  if (!r.Uint(state, kSpi, 4294967295.0, &spi) || spi == 0 || !r.Uint(state, kProto, 255, &proto)) return 0;
  if (!r.Uint(state, kReqid, 4294967295.0, &reqid) || !r.Uint(state, kReplayWindow, kMaxReplayWindow, &window)) {
    return 0;
  }
  int mode = ModeCode(r, state);
  if (mode < 0) return 0;
  napi_value esnValue;
  if (!r.Get(state, kEsn, &esnValue)) return 0;
  bool esn = false;
  if (napi_get_value_bool(r.env, esnValue, &esn) != napi_ok && r.Type(esnValue) != napi_undefined) return 0;
  bool hasMark, hasOutputMark, hasAead;
  uint32_t markValue = 0, markMask = 0, outValue = 0, outMask = 0;
  if (!Mark(r, state, kMark, &hasMark, &markValue, &markMask)) return 0;
  if (!Mark(r, state, kOutputMark, &hasOutputMark, &outValue, &outMask)) return 0;
  napi_value aead;
  if (!r.Optional(state, kAead, &aead, &hasAead)) return 0;
  char name[kAlgNameBytes];
  size_t nameLen = 0;
  const uint8_t* key = nullptr;
  size_t keyLen = 0;
  uint32_t icvBits = 0;
  if (hasAead) {
    if (!r.Str(aead, kName, name, sizeof(name), &nameLen) || nameLen == 0) return 0;
    napi_value keyValue;
    bool isTyped = false;
    if (!r.Get(aead, kKey, &keyValue) || napi_is_typedarray(r.env, keyValue, &isTyped) != napi_ok || !isTyped) {
      return 0;
    }
    napi_typedarray_type type;
    void* data = nullptr;
    if (napi_get_typedarray_info(r.env, keyValue, &type, &keyLen, &data, nullptr, nullptr) != napi_ok) return 0;
    if (type != napi_uint8_array || keyLen == 0 || keyLen > kMaxKeyBytes) return 0;
    key = static_cast<const uint8_t*>(data);
    if (!r.Uint(aead, kIcvBits, 4294967295.0, &icvBits)) return 0;
  }
  bool useEsnAttr = esn || window > kLegacyReplayWindowMax;
  size_t aeadLen = hasAead ? NLA_HDRLEN + sizeof(xfrm_algo_aead) + keyLen : 0;
  size_t total = NLMSG_HDRLEN + sizeof(xfrm_usersa_info) + NLA_ALIGN(aeadLen) + (useEsnAttr ? kEsnAttr : 0) +
                 (hasMark ? kMarkAttr : 0) + (hasOutputMark ? 2 * kU32Attr : 0);
  Header(m, total, XFRM_MSG_NEWSA, seq);
  // The selector stays all-zero (family 0): the kernel fills in the SA's family, as with `ip xfrm state add`.
  auto info = Zeroed<xfrm_usersa_info>();
  std::memcpy(&info.id.daddr.a4, dst, 4);
  info.id.spi = htonl(spi);
  info.id.proto = static_cast<uint8_t>(proto);
  std::memcpy(&info.saddr.a4, src, 4);
  InfiniteLimits(info.lft);
  info.reqid = reqid;
  info.family = AF_INET;
  info.mode = static_cast<uint8_t>(mode);
  info.replay_window = useEsnAttr ? 0 : static_cast<uint8_t>(window);
  info.flags = esn ? XFRM_STATE_ESN : 0;
  uint8_t* p = Put(m + NLMSG_HDRLEN, info);
  if (hasAead) {
    auto alg = Zeroed<xfrm_algo_aead>();
    std::memcpy(alg.alg_name, name, nameLen);
    alg.alg_key_len = static_cast<unsigned>(keyLen * 8);
    alg.alg_icv_len = icvBits;
    std::memcpy(Put(Attr(p, XFRMA_ALG_AEAD, aeadLen), alg), key, keyLen);
    p += NLA_ALIGN(aeadLen);
  }
  if (useEsnAttr) {
    // Header only (bitmap length in words, window in packets): the kernel allocates the bitmap itself.
    auto replay = Zeroed<xfrm_replay_state_esn>();
    replay.bmp_len = (window + 31) / 32;
    replay.replay_window = window;
    p = PutAttr(p, XFRMA_REPLAY_ESN_VAL, replay);
  }
  if (hasMark) p = PutAttr(p, XFRMA_MARK, MarkOf(markValue, markMask));
  if (hasOutputMark) {
    p = PutAttr(p, XFRMA_SET_MARK, outValue);
    PutAttr(p, XFRMA_SET_MARK_MASK, outMask);
  }
  return total;
}

// XFRM_MSG_NEWPOLICY / XFRM_MSG_UPDPOLICY into m (zeroed); returns the length, 0 to leave the op to TypeScript.
size_t EncodePolicy(const Reader& r, napi_value policy, uint16_t type, uint32_t seq, uint8_t* m) {
  napi_value sel;
  if (!r.Object(policy, kSelector, &sel) || !Family4(r, sel)) return 0;
  uint8_t selDst[4], selSrc[4], dstLen, srcLen;
  uint32_t selProto, priority;
  if (!Cidr4(r, sel, kDst, selDst, &dstLen) || !Cidr4(r, sel, kSrc, selSrc, &srcLen)) return 0;
  if (!r.Uint(sel, kProto, 255, &selProto) || !r.Uint(policy, kPriority, 4294967295.0, &priority)) return 0;
  char buf[16];
  size_t len;
  if (!r.Str(policy, kDir, buf, sizeof(buf), &len)) return 0;
  int dir = len == 2 && std::memcmp(buf, "in", 2) == 0    ? XFRM_POLICY_IN
            : len == 3 && std::memcmp(buf, "out", 3) == 0 ? XFRM_POLICY_OUT
            : len == 3 && std::memcmp(buf, "fwd", 3) == 0 ? XFRM_POLICY_FWD
                                                           : -1;
  if (dir < 0 || !r.Str(policy, kAction, buf, sizeof(buf), &len)) return 0;
  int action = len == 5 && std::memcmp(buf, "allow", 5) == 0   ? XFRM_POLICY_ALLOW
               : len == 5 && std::memcmp(buf, "block", 5) == 0 ? XFRM_POLICY_BLOCK
                                                                : -1;
  if (action < 0) return 0;
  bool hasMark;
  uint32_t markValue = 0, markMask = 0;
  if (!Mark(r, policy, kMark, &hasMark, &markValue, &markMask)) return 0;
  napi_value templates;
  bool isArray = false;
  uint32_t count = 0;
  if (!r.Get(policy, kTemplates, &templates) || napi_is_array(r.env, templates, &isArray) != napi_ok || !isArray ||
      napi_get_array_length(r.env, templates, &count) != napi_ok || count > kMaxTemplates) {
    return 0;
  }
  size_t tmplLen = count > 0 ? NLA_HDRLEN + count * sizeof(xfrm_user_tmpl) : 0;
  size_t total = NLMSG_HDRLEN + sizeof(xfrm_userpolicy_info) + tmplLen + (hasMark ? kMarkAttr : 0);
  uint8_t* p = m + NLMSG_HDRLEN + sizeof(xfrm_userpolicy_info);
  if (count > 0) {
    p = Attr(p, XFRMA_TMPL, tmplLen);
    for (uint32_t i = 0; i < count; ++i) {
      napi_value t;
      napi_valuetype tt = napi_undefined;
      if (napi_get_element(r.env, templates, i, &t) != napi_ok || napi_typeof(r.env, t, &tt) != napi_ok ||
          tt != napi_object) {
        return 0;
      }
      auto tmpl = Zeroed<xfrm_user_tmpl>();
      uint32_t spi, proto, reqid;
      if (!Family4(r, t) || !Address4(r, t, kDst, reinterpret_cast<uint8_t*>(&tmpl.id.daddr.a4)) ||
          !Address4(r, t, kSrc, reinterpret_cast<uint8_t*>(&tmpl.saddr.a4))) {
        return 0;
      }
      if (!r.Uint(t, kSpi, 4294967295.0, &spi) || !r.Uint(t, kProto, 255, &proto)) return 0;
      int mode = ModeCode(r, t);
      if (!r.Uint(t, kReqid, 4294967295.0, &reqid) || mode < 0) return 0;
      tmpl.id.spi = htonl(spi);
      tmpl.id.proto = static_cast<uint8_t>(proto);
      tmpl.family = AF_INET;
      tmpl.reqid = reqid;
      tmpl.mode = static_cast<uint8_t>(mode);
      tmpl.aalgos = tmpl.ealgos = tmpl.calgos = ~0U;  // any algorithm, as iproute2 sets them
      p = Put(p, tmpl);
    }
  }
  if (hasMark) PutAttr(p, XFRMA_MARK, MarkOf(markValue, markMask));
  Header(m, total, type, seq);
  auto info = Zeroed<xfrm_userpolicy_info>();
  std::memcpy(&info.sel.daddr.a4, selDst, 4);
  std::memcpy(&info.sel.saddr.a4, selSrc, 4);
  info.sel.family = AF_INET;
  info.sel.prefixlen_d = dstLen;
  info.sel.prefixlen_s = srcLen;
  info.sel.proto = static_cast<uint8_t>(selProto);
  InfiniteLimits(info.lft);
  info.priority = priority;
  info.dir = static_cast<uint8_t>(dir);
  info.action = static_cast<uint8_t>(action);
  Put(m + NLMSG_HDRLEN, info);
  return total;
}

size_t EncodeOp(const Reader& r, napi_value op, uint32_t seq, uint8_t* m) {
  char kind[16];
  size_t len;
  napi_value body;
  if (!r.Str(op, kKind, kind, sizeof(kind), &len)) return 0;
  if (len == 8 && std::memcmp(kind, "addState", 8) == 0) {
    return r.Object(op, kState, &body) ? EncodeState(r, body, seq, m) : 0;
  }
  if (len == 9 && std::memcmp(kind, "addPolicy", 9) == 0) {
    return r.Object(op, kPolicy, &body) ? EncodePolicy(r, body, XFRM_MSG_NEWPOLICY, seq, m) : 0;
  }
  if (len == 12 && std::memcmp(kind, "updatePolicy", 12) == 0) {
    return r.Object(op, kPolicy, &body) ? EncodePolicy(r, body, XFRM_MSG_UPDPOLICY, seq, m) : 0;
  }
  return 0;
}

bool TypedArrayOf(napi_env env, napi_value v, napi_typedarray_type want, void** data, size_t* length) {
  bool is = false;
  napi_typedarray_type type;
  if (napi_is_typedarray(env, v, &is) != napi_ok || !is) return false;
  return napi_get_typedarray_info(env, v, &type, length, data, nullptr, nullptr) == napi_ok && type == want;
}

napi_value XfrmEncode(napi_env env, napi_callback_info info) {
  size_t argc = 6;
  napi_value argv[6];
  napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr);
  bool isArray = false;
  uint32_t start = 0, end = 0;
  void* seqData = nullptr;
  void* outData = nullptr;
  void* cursorData = nullptr;
  size_t seqCount = 0, outLen = 0, cursorLen = 0;
  if (argc != 6 || napi_is_array(env, argv[0], &isArray) != napi_ok || !isArray ||
      napi_get_value_uint32(env, argv[1], &start) != napi_ok || napi_get_value_uint32(env, argv[2], &end) != napi_ok ||
      !TypedArrayOf(env, argv[3], napi_uint32_array, &seqData, &seqCount) ||
      !TypedArrayOf(env, argv[4], napi_uint8_array, &outData, &outLen) ||
      !TypedArrayOf(env, argv[5], napi_uint32_array, &cursorData, &cursorLen) || cursorLen < 1 || end < start ||
      end - start > seqCount) {
    napi_throw_type_error(env, nullptr,
                          "xfrmEncode(ops: array, start: number, end: number, seqs: Uint32Array, out: Uint8Array, "
                          "cursor: Uint32Array) expected, with end - start <= seqs.length");
    return nullptr;
  }
  uint32_t length = 0;
  napi_get_array_length(env, argv[0], &length);
  if (end > length) end = length;
  Reader r{env, {}};
  for (int k = 0; k < kKeyCount; ++k) napi_create_string_utf8(env, kKeyNames[k], NAPI_AUTO_LENGTH, &r.keys[k]);
  const auto* seqs = static_cast<const uint32_t*>(seqData);
  auto* out = static_cast<uint8_t*>(outData);
  auto* cursor = static_cast<uint32_t*>(cursorData);
  size_t at = cursor[0];
  uint32_t done = 0;
  alignas(8) uint8_t m[kMessageMax];
  constexpr uint32_t kOpsPerScope = 64;  // handles of this many ops live in one handle scope
  napi_handle_scope scope = nullptr;
  for (uint32_t i = start; i < end; ++i) {
    if (at > outLen || outLen - at < kMessageMax) break;  // room for any message: else the caller grows `out`
    if ((i - start) % kOpsPerScope == 0) {
      if (scope != nullptr) napi_close_handle_scope(env, scope);
      if (napi_open_handle_scope(env, &scope) != napi_ok) {
        scope = nullptr;
        break;
      }
    }
    napi_value op;
    size_t len = 0;
    std::memset(m, 0, sizeof(m));
    napi_valuetype t = napi_undefined;
    if (napi_get_element(env, argv[0], i, &op) == napi_ok && napi_typeof(env, op, &t) == napi_ok &&
        t == napi_object) {
      len = EncodeOp(r, op, seqs[i - start], m);
    }
    if (len == 0) {
      // A pending JS exception (a throwing getter) also ends the run; TypeScript then meets it itself.
      bool pending = false;
      napi_is_exception_pending(env, &pending);
      if (pending) {
        napi_value ignored;
        napi_get_and_clear_last_exception(env, &ignored);
      }
      break;
    }
    std::memcpy(out + at, m, NLMSG_ALIGN(len));
    at += NLMSG_ALIGN(len);
    ++done;
  }
  if (scope != nullptr) napi_close_handle_scope(env, scope);
  cursor[0] = static_cast<uint32_t>(at);
  napi_value result;
  napi_create_uint32(env, done, &result);
  return result;
}

// offsetof/sizeof of the structs in src/xfrm/netlink-layout.ts, named as there.
Napi::Object Layout(Napi::Env env) {
  Napi::Object all = Napi::Object::New(env);
  Napi::Object s;
  auto begin = [&](const char* name, size_t size) {
    s = Napi::Object::New(env);
    s.Set("SIZE", static_cast<double>(size));
    all.Set(name, s);
  };
  auto field = [&](const char* name, size_t offset) { s.Set(name, static_cast<double>(offset)); };
#define KMESH_STRUCT(T) begin(#T, sizeof(T))
#define KMESH_FIELD(T, F) field(#F, offsetof(T, F))
  KMESH_STRUCT(xfrm_selector);
  KMESH_FIELD(xfrm_selector, daddr);
  KMESH_FIELD(xfrm_selector, saddr);
  KMESH_FIELD(xfrm_selector, dport);
  KMESH_FIELD(xfrm_selector, dport_mask);
  KMESH_FIELD(xfrm_selector, sport);
  KMESH_FIELD(xfrm_selector, sport_mask);
  KMESH_FIELD(xfrm_selector, family);
  KMESH_FIELD(xfrm_selector, prefixlen_d);
  KMESH_FIELD(xfrm_selector, prefixlen_s);
  KMESH_FIELD(xfrm_selector, proto);
  KMESH_FIELD(xfrm_selector, ifindex);
  KMESH_FIELD(xfrm_selector, user);
  KMESH_STRUCT(xfrm_id);
  KMESH_FIELD(xfrm_id, daddr);
  KMESH_FIELD(xfrm_id, spi);
  KMESH_FIELD(xfrm_id, proto);
  KMESH_STRUCT(xfrm_lifetime_cfg);
  KMESH_FIELD(xfrm_lifetime_cfg, soft_byte_limit);
  KMESH_FIELD(xfrm_lifetime_cfg, hard_byte_limit);
  KMESH_FIELD(xfrm_lifetime_cfg, soft_packet_limit);
  KMESH_FIELD(xfrm_lifetime_cfg, hard_packet_limit);
  KMESH_FIELD(xfrm_lifetime_cfg, soft_add_expires_seconds);
  KMESH_FIELD(xfrm_lifetime_cfg, hard_add_expires_seconds);
  KMESH_FIELD(xfrm_lifetime_cfg, soft_use_expires_seconds);
  KMESH_FIELD(xfrm_lifetime_cfg, hard_use_expires_seconds);
  KMESH_STRUCT(xfrm_usersa_info);
  KMESH_FIELD(xfrm_usersa_info, sel);
  KMESH_FIELD(xfrm_usersa_info, id);
  KMESH_FIELD(xfrm_usersa_info, saddr);
  KMESH_FIELD(xfrm_usersa_info, lft);
  KMESH_FIELD(xfrm_usersa_info, curlft);
  KMESH_FIELD(xfrm_usersa_info, stats);
  KMESH_FIELD(xfrm_usersa_info, seq);
  KMESH_FIELD(xfrm_usersa_info, reqid);
  KMESH_FIELD(xfrm_usersa_info, family);
  KMESH_FIELD(xfrm_usersa_info, mode);
  KMESH_FIELD(xfrm_usersa_info, replay_window);
  KMESH_FIELD(xfrm_usersa_info, flags);
  KMESH_STRUCT(xfrm_usersa_id);
  KMESH_FIELD(xfrm_usersa_id, daddr);
  KMESH_FIELD(xfrm_usersa_id, spi);
  KMESH_FIELD(xfrm_usersa_id, family);
  KMESH_FIELD(xfrm_usersa_id, proto);
  KMESH_STRUCT(xfrm_userpolicy_info);
  KMESH_FIELD(xfrm_userpolicy_info, sel);
  KMESH_FIELD(xfrm_userpolicy_info, lft);
  KMESH_FIELD(xfrm_userpolicy_info, curlft);
  KMESH_FIELD(xfrm_userpolicy_info, priority);
  KMESH_FIELD(xfrm_userpolicy_info, index);
  KMESH_FIELD(xfrm_userpolicy_info, dir);
  KMESH_FIELD(xfrm_userpolicy_info, action);
  KMESH_FIELD(xfrm_userpolicy_info, flags);
  KMESH_FIELD(xfrm_userpolicy_info, share);
  KMESH_STRUCT(xfrm_userpolicy_id);
  KMESH_FIELD(xfrm_userpolicy_id, sel);
  KMESH_FIELD(xfrm_userpolicy_id, index);
  KMESH_FIELD(xfrm_userpolicy_id, dir);
  KMESH_STRUCT(xfrm_user_tmpl);
  KMESH_FIELD(xfrm_user_tmpl, id);
  KMESH_FIELD(xfrm_user_tmpl, family);
  KMESH_FIELD(xfrm_user_tmpl, saddr);
  KMESH_FIELD(xfrm_user_tmpl, reqid);
  KMESH_FIELD(xfrm_user_tmpl, mode);
  KMESH_FIELD(xfrm_user_tmpl, share);
  KMESH_FIELD(xfrm_user_tmpl, optional);
  KMESH_FIELD(xfrm_user_tmpl, aalgos);
  KMESH_FIELD(xfrm_user_tmpl, ealgos);
  KMESH_FIELD(xfrm_user_tmpl, calgos);
  KMESH_STRUCT(xfrm_algo_aead);
  KMESH_FIELD(xfrm_algo_aead, alg_name);
  KMESH_FIELD(xfrm_algo_aead, alg_key_len);
  KMESH_FIELD(xfrm_algo_aead, alg_icv_len);
  KMESH_FIELD(xfrm_algo_aead, alg_key);
  KMESH_STRUCT(xfrm_replay_state_esn);
  KMESH_FIELD(xfrm_replay_state_esn, bmp_len);
  KMESH_FIELD(xfrm_replay_state_esn, oseq);
  KMESH_FIELD(xfrm_replay_state_esn, seq);
  KMESH_FIELD(xfrm_replay_state_esn, oseq_hi);
  KMESH_FIELD(xfrm_replay_state_esn, seq_hi);
  KMESH_FIELD(xfrm_replay_state_esn, replay_window);
  KMESH_FIELD(xfrm_replay_state_esn, bmp);
  KMESH_STRUCT(xfrm_mark);
  KMESH_FIELD(xfrm_mark, v);
  KMESH_FIELD(xfrm_mark, m);
  KMESH_STRUCT(xfrm_userpolicy_type);
  KMESH_FIELD(xfrm_userpolicy_type, type);
#undef KMESH_FIELD
#undef KMESH_STRUCT
  return all;
}

}  // namespace

void InitXfrmEncode(Napi::Env env, Napi::Object exports) {
  napi_value fn;
  napi_create_function(env, "xfrmEncode", NAPI_AUTO_LENGTH, XfrmEncode, nullptr, &fn);
  exports.Set("xfrmEncode", Napi::Value(env, fn));
  exports.Set("xfrmLayout", Layout(env));
}

}  // namespace kmesh
