// Shared helpers of the native addon: typed errors that carry errno, operation and object name.
#pragma once

#include <napi.h>

#include <cerrno>
#include <cstring>
#include <string>

namespace kmesh {

// A kernel error as it reaches JavaScript: an Error with .code = "KMESH_ERRNO", .errno (positive),
// .syscall (the operation) and .object (what it was applied to), and a message naming all of them.
inline Napi::Error ErrnoError(Napi::Env env, int err, const std::string& op, const std::string& object) {
  if (err < 0) err = -err;
  std::string msg = op + " " + object + ": " + std::strerror(err) + " (errno " + std::to_string(err) + ")";
  Napi::Error e = Napi::Error::New(env, msg);
  e.Set("code", Napi::String::New(env, "KMESH_ERRNO"));
  e.Set("errno", Napi::Number::New(env, err));
  e.Set("syscall", Napi::String::New(env, op));
  e.Set("object", Napi::String::New(env, object));
  return e;
}

// Opens a NETLINK_XFRM socket inside the network namespace at `netns` ("" = the caller's own); -1 on failure
// with *err (errno), *op and *object saying what failed (native/xfrm.cc).
int OpenXfrmSocketIn(const std::string& netns, int* err, std::string* op, std::string* object);

void InitBpf(Napi::Env env, Napi::Object exports);
void InitXfrmMonitor(Napi::Env env, Napi::Object exports);
void InitXfrmDump(Napi::Env env, Napi::Object exports);
void InitXfrm(Napi::Env env, Napi::Object exports);
void InitXfrmEncode(Napi::Env env, Napi::Object exports);
void InitFileLock(Napi::Env env, Napi::Object exports);
void InitPairKeys(Napi::Env env, Napi::Object exports);

}  // namespace kmesh
