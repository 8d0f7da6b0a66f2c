// SHA-512 over many pair-key inputs in one call, through the OpenSSL that Node itself links (its EVP symbols are
// the process's): the JavaScript around node:crypto's hash() cost a first 5,000-peer plan more than the hashing
// (docs/benchmarks.md, twelfth session). Mechanism only: the caller (src/ipsec/pair-key-batch.ts) names each
// request's PSK, source and destination endpoint (an endpoint is an IP text and a boot ID text) and where its 36
// bytes go; this hashes SPEC's five parts (PSK, source IP, destination IP, source boot ID, destination boot ID, a
// boot ID cut to its first 36 bytes of UTF-8) and copies the digest's first bytes out. Each endpoint's texts are
// read as UTF-8 once per call: laying them out from JavaScript cost a first 5,000-peer plan ~10 ms of Buffer.write
// calls (docs/benchmarks.md, sixteenth session).
#include <openssl/crypto.h>
#include <openssl/evp.h>

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "common.h"

namespace kmesh {

namespace {

// Bytes of a pair key (the first bytes of its SHA-512 digest); the caller's out buffer holds one per request.
constexpr uint32_t kKeyBytes = 36;
// Uint32 words per request: PSK index, source endpoint, destination endpoint, offset of the key in out.
constexpr uint32_t kRequestWords = 4;
// Bytes of a boot ID that go into a key (SPEC: Kmesh slices the bytes, even inside a character).
constexpr size_t kBootIdBytes = 36;

struct Range {
  const uint8_t* data;
  size_t length;
};

// derive(psks: Buffer[], endpoints: string[], requests: Uint32Array, count: number, out: Buffer): void.
// endpoints holds two texts per endpoint: its IP, then its boot ID. A request that points outside its arrays is a
// caller's bug: TypeError or RangeError, and nothing of that call is trusted (out may hold some keys already).
Napi::Value Derive(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() != 5 || !info[0].IsArray() || !info[1].IsArray() || !info[2].IsTypedArray() ||
      !info[3].IsNumber() || !info[4].IsBuffer()) {
    throw Napi::TypeError::New(env,
                               "derive(psks: Buffer[], endpoints: string[], requests: Uint32Array, count: number, "
                               "out: Buffer)");
  }
  Napi::Array pskArray = info[0].As<Napi::Array>();
  std::vector<Range> psks;
  for (uint32_t i = 0; i < pskArray.Length(); i++) {
    Napi::Value v = pskArray.Get(i);
    if (!v.IsBuffer()) throw Napi::TypeError::New(env, "derive: psks[" + std::to_string(i) + "] is not a Buffer");
    auto b = v.As<Napi::Buffer<uint8_t>>();
    psks.push_back({b.Data(), b.Length()});
  }
  Napi::Array endpointArray = info[1].As<Napi::Array>();
  const uint32_t texts = endpointArray.Length();
  if (texts % 2 != 0) throw Napi::TypeError::New(env, "derive: endpoints must hold an IP and a boot ID per endpoint");
  std::vector<std::string> endpointTexts(texts);
  for (uint32_t i = 0; i < texts; i++) {
    Napi::Value v = endpointArray.Get(i);
    if (!v.IsString()) throw Napi::TypeError::New(env, "derive: endpoints[" + std::to_string(i) + "] is not a string");
    endpointTexts[i] = v.As<Napi::String>().Utf8Value();
    if (i % 2 == 1 && endpointTexts[i].size() > kBootIdBytes) endpointTexts[i].resize(kBootIdBytes);
  }
  Napi::TypedArray requestsArray = info[2].As<Napi::TypedArray>();
  if (requestsArray.TypedArrayType() != napi_uint32_array) {
    throw Napi::TypeError::New(env, "derive: requests must be a Uint32Array");
  }
  auto requests = requestsArray.As<Napi::Uint32Array>();
  const int64_t count = info[3].As<Napi::Number>().Int64Value();
  auto out = info[4].As<Napi::Buffer<uint8_t>>();
  if (count < 0 || static_cast<uint64_t>(count) * kRequestWords > requests.ElementLength()) {
    throw Napi::RangeError::New(env, "derive: count " + std::to_string(count) + " exceeds the requests");
  }

  const size_t endpointCount = texts / 2;
  auto text = [&](size_t i) -> Range {
    const std::string& t = endpointTexts[i];
    return {reinterpret_cast<const uint8_t*>(t.data()), t.size()};
  };

  // One SHA-512 implementation fetched per process (EVP_sha512() looks it up again at every init).
  static EVP_MD* sha512 = EVP_MD_fetch(nullptr, "SHA512", nullptr);
  if (sha512 == nullptr) throw Napi::Error::New(env, "derive: OpenSSL has no SHA512");
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  if (ctx == nullptr) throw Napi::Error::New(env, "derive: EVP_MD_CTX_new failed");
  unsigned char digest[EVP_MAX_MD_SIZE];
  // A request outside its buffers (the caller's bug) is a RangeError; OpenSSL failing is an Error.
  std::string failure;
  bool outOfRange = false;
  for (int64_t r = 0; r < count; r++) {
    const uint32_t* q = requests.Data() + r * kRequestWords;
    const uint32_t psk = q[0], src = q[1], dst = q[2], at = q[3];
    if (psk >= psks.size() || src >= endpointCount || dst >= endpointCount ||
        static_cast<uint64_t>(at) + kKeyBytes > out.Length()) {
      failure = "derive: request " + std::to_string(r) + " points outside its arrays";
      outOfRange = true;
      break;
    }
    // SPEC's order: PSK, source IP, destination IP, source boot ID, destination boot ID.
    const Range parts[5] = {psks[psk], text(2 * src), text(2 * dst), text(2 * src + 1), text(2 * dst + 1)};
    unsigned int length = 0;
    bool ok = EVP_DigestInit_ex2(ctx, sha512, nullptr) == 1;
    for (const Range& p : parts) ok = ok && EVP_DigestUpdate(ctx, p.data, p.length) == 1;
    ok = ok && EVP_DigestFinal_ex(ctx, digest, &length) == 1 && length >= kKeyBytes;
    if (!ok) {
      failure = "derive: SHA-512 failed";
      break;
    }
    std::memcpy(out.Data() + at, digest, kKeyBytes);
  }
  // The digest state held the PSK: EVP_MD_CTX_free cleanses it; the last digest is cleansed here.
  EVP_MD_CTX_free(ctx);
  OPENSSL_cleanse(digest, sizeof digest);
  if (outOfRange) throw Napi::RangeError::New(env, failure);
  if (!failure.empty()) throw Napi::Error::New(env, failure);
  return env.Undefined();
}

}  // namespace

void InitPairKeys(Napi::Env env, Napi::Object exports) {
  Napi::Object keys = Napi::Object::New(env);
  keys.Set("derive", Napi::Function::New(env, Derive, "derive"));
  exports.Set("pairKeys", keys);
}

}  // namespace kmesh
