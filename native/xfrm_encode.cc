// Native fast path of the XFRM netlink encoder (src/xfrm/netlink-codec.ts stays the reference). Mechanical only:
// it lays out the same kernel structs the TypeScript codec writes (linux/xfrm.h, x86_64 / little-endian) for the
// ops a full apply sends by the thousand -- addState (XFRM_MSG_NEWSA), addPolicy / updatePolicy
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
#include <node_api.h>

#include <cmath>
#include <cstdint>
#include <cstring>

#include "common.h"

namespace kmesh {
namespace {

constexpr uint16_t kNewSa = 0x10;
constexpr uint16_t kNewPolicy = 0x13;
constexpr uint16_t kUpdPolicy = 0x19;
constexpr uint16_t kFlags = 0x1 | 0x4;  // NLM_F_REQUEST | NLM_F_ACK, as the TypeScript codec writes them
constexpr uint16_t kAttrTmpl = 5;
constexpr uint16_t kAttrAead = 18;
constexpr uint16_t kAttrMark = 21;
constexpr uint16_t kAttrReplayEsn = 23;
constexpr uint16_t kAttrSetMark = 29;
constexpr uint16_t kAttrSetMarkMask = 30;
constexpr uint8_t kStateEsn = 128;
constexpr uint16_t kAfInet = 2;
constexpr uint32_t kMaxReplayWindow = 128 * 32;
constexpr uint32_t kLegacyReplayWindowMax = 32;
constexpr size_t kMaxTemplates = 8;
constexpr size_t kMaxKeyBytes = 512;
constexpr size_t kMessageMax = 1024;  // > the largest SA (884 bytes) and policy (712 bytes) encoded here

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
  if (len == 6 && std::memcmp(buf, "tunnel", 6) == 0) return 1;
  if (len == 9 && std::memcmp(buf, "transport", 9) == 0) return 0;
  return -1;
}

inline void Put16(uint8_t* p, uint16_t v) { std::memcpy(p, &v, 2); }
inline void Put32(uint8_t* p, uint32_t v) { std::memcpy(p, &v, 4); }
inline void Put32be(uint8_t* p, uint32_t v) {
  p[0] = static_cast<uint8_t>(v >> 24);
  p[1] = static_cast<uint8_t>(v >> 16);
  p[2] = static_cast<uint8_t>(v >> 8);
  p[3] = static_cast<uint8_t>(v);
}
inline void Header(uint8_t* m, size_t len, uint16_t type, uint32_t seq) {
  Put32(m, static_cast<uint32_t>(len));
  Put16(m + 4, type);
  Put16(m + 6, kFlags);
  Put32(m + 8, seq);
}
inline size_t Attr(uint8_t* p, uint16_t type, size_t len) {
  Put16(p, static_cast<uint16_t>(len));
  Put16(p + 2, type);
  return 4;
}
inline size_t Align4(size_t n) { return (n + 3) & ~size_t{3}; }

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
  char name[64];
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
  size_t aeadLen = hasAead ? 4 + 72 + keyLen : 0;
  size_t total = 16 + 224 + Align4(aeadLen) + (useEsnAttr ? 4 + 24 : 0) + (hasMark ? 12 : 0) +
                 (hasOutputMark ? 16 : 0);
  Header(m, total, kNewSa, seq);
  uint8_t* info = m + 16;
  std::memcpy(info + 56, dst, 4);
  Put32be(info + 72, spi);
  info[76] = static_cast<uint8_t>(proto);
  std::memcpy(info + 80, src, 4);
  std::memset(info + 96, 0xff, 32);  // lifetime limits infinite, as iproute2 sets them
  Put32(info + 208, reqid);
  Put16(info + 212, kAfInet);
  info[214] = static_cast<uint8_t>(mode);
  info[215] = useEsnAttr ? 0 : static_cast<uint8_t>(window);
  info[216] = esn ? kStateEsn : 0;
  uint8_t* p = info + 224;
  if (hasAead) {
    uint8_t* data = p + Attr(p, kAttrAead, aeadLen);
    std::memcpy(data, name, nameLen);
    Put32(data + 64, static_cast<uint32_t>(keyLen * 8));
    Put32(data + 68, icvBits);
    std::memcpy(data + 72, key, keyLen);
    p += Align4(aeadLen);
  }
  if (useEsnAttr) {
    uint8_t* data = p + Attr(p, kAttrReplayEsn, 4 + 24);
    Put32(data, (window + 31) / 32);
    Put32(data + 20, window);
    p += 4 + 24;
  }
  if (hasMark) {
    Attr(p, kAttrMark, 12);
    Put32(p + 4, markValue);
    Put32(p + 8, markMask);
    p += 12;
  }
  if (hasOutputMark) {
    Attr(p, kAttrSetMark, 8);
    Put32(p + 4, outValue);
    Attr(p + 8, kAttrSetMarkMask, 8);
    Put32(p + 12, outMask);
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
  int dir = len == 2 && std::memcmp(buf, "in", 2) == 0    ? 0
            : len == 3 && std::memcmp(buf, "out", 3) == 0 ? 1
            : len == 3 && std::memcmp(buf, "fwd", 3) == 0 ? 2
                                                           : -1;
  if (dir < 0 || !r.Str(policy, kAction, buf, sizeof(buf), &len)) return 0;
  int action = len == 5 && std::memcmp(buf, "allow", 5) == 0 ? 0 : len == 5 && std::memcmp(buf, "block", 5) == 0 ? 1 : -1;
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
  size_t tmplLen = count > 0 ? 4 + count * 64 : 0;
  size_t total = 16 + 168 + tmplLen + (hasMark ? 12 : 0);
  uint8_t* info = m + 16;
  uint8_t* p = info + 168;
  if (count > 0) {
    p += Attr(p, kAttrTmpl, tmplLen);
    for (uint32_t i = 0; i < count; ++i, p += 64) {
      napi_value t;
      napi_valuetype tt = napi_undefined;
      if (napi_get_element(r.env, templates, i, &t) != napi_ok || napi_typeof(r.env, t, &tt) != napi_ok ||
          tt != napi_object) {
        return 0;
      }
      uint32_t spi, proto, reqid;
      if (!Family4(r, t) || !Address4(r, t, kDst, p) || !Address4(r, t, kSrc, p + 28)) return 0;
      if (!r.Uint(t, kSpi, 4294967295.0, &spi) || !r.Uint(t, kProto, 255, &proto)) return 0;
      int mode = ModeCode(r, t);
      if (!r.Uint(t, kReqid, 4294967295.0, &reqid) || mode < 0) return 0;
      Put32be(p + 16, spi);
      p[20] = static_cast<uint8_t>(proto);
      Put16(p + 24, kAfInet);
      Put32(p + 44, reqid);
      p[48] = static_cast<uint8_t>(mode);
      std::memset(p + 52, 0xff, 12);  // any algorithm (aalgos/ealgos/calgos), as iproute2 sets them
    }
  }
  if (hasMark) {
    Attr(p, kAttrMark, 12);
    Put32(p + 4, markValue);
    Put32(p + 8, markMask);
  }
  Header(m, total, type, seq);
  std::memcpy(info, selDst, 4);
  std::memcpy(info + 16, selSrc, 4);
  Put16(info + 40, kAfInet);
  info[42] = dstLen;
  info[43] = srcLen;
  info[44] = static_cast<uint8_t>(selProto);
  std::memset(info + 56, 0xff, 32);  // lifetime limits infinite
  Put32(info + 152, priority);
  info[160] = static_cast<uint8_t>(dir);
  info[161] = static_cast<uint8_t>(action);
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
    return r.Object(op, kPolicy, &body) ? EncodePolicy(r, body, kNewPolicy, seq, m) : 0;
  }
  if (len == 12 && std::memcmp(kind, "updatePolicy", 12) == 0) {
    return r.Object(op, kPolicy, &body) ? EncodePolicy(r, body, kUpdPolicy, seq, m) : 0;
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
  uint8_t m[kMessageMax];
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
    std::memcpy(out + at, m, Align4(len));
    at += Align4(len);
    ++done;
  }
  if (scope != nullptr) napi_close_handle_scope(env, scope);
  cursor[0] = static_cast<uint32_t>(at);
  napi_value result;
  napi_create_uint32(env, done, &result);
  return result;
}

}  // namespace

void InitXfrmEncode(Napi::Env env, Napi::Object exports) {
  napi_value fn;
  napi_create_function(env, "xfrmEncode", NAPI_AUTO_LENGTH, XfrmEncode, nullptr, &fn);
  exports.Set("xfrmEncode", Napi::Value(env, fn));
}

}  // namespace kmesh
