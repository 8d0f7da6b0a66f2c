// Owned file descriptors of BPF objects (programs, maps, links) as JavaScript objects of class BpfFd. A raw fd
// never crosses the addon: every call that opens one returns a BpfFd, every call that uses one takes a BpfFd.
// The kernel fd is closed exactly once, when its last holder lets go: the JS object (its idempotent close(), or
// its destructor when the object is garbage-collected without one) and every worker still running on it each
// hold a reference, so close() during an operation in flight cannot hand that operation a reused number.
#pragma once

#include <unistd.h>

#include <memory>

#include "common.h"

namespace kmesh {

// One kernel fd, closed by the destructor.
class OwnedFd {
 public:
  explicit OwnedFd(int fd) : fd_(fd) {}
  ~OwnedFd() {
    if (fd_ >= 0) ::close(fd_);
  }
  OwnedFd(const OwnedFd&) = delete;
  OwnedFd& operator=(const OwnedFd&) = delete;
  int get() const { return fd_; }

 private:
  int fd_;
};

// A shared hold on an open fd; workers capture it by value.
using FdRef = std::shared_ptr<const OwnedFd>;

// JS: class BpfFd { readonly fd: number (-1 once closed); readonly closed: boolean; close(): void }
// Instances come only from the addon (new BpfFd() from JavaScript throws).
class BpfFd : public Napi::ObjectWrap<BpfFd> {
 public:
  explicit BpfFd(const Napi::CallbackInfo& info);

  // Registers the class on `target` (as `Fd`) and remembers its constructor for Wrap().
  static void Init(Napi::Env env, Napi::Object target);
  // A new BpfFd owning `fd` (the caller gives up its own claim).
  static Napi::Object Wrap(Napi::Env env, int fd);
  // A hold on the open fd behind `value`; a TypeError naming `name` when it is not a BpfFd or is closed.
  static FdRef Hold(Napi::Env env, const Napi::Value& value, const std::string& name);

 private:
  Napi::Value Fd(const Napi::CallbackInfo& info);
  Napi::Value Closed(const Napi::CallbackInfo& info);
  Napi::Value Close(const Napi::CallbackInfo& info);

  FdRef ref_;
};

// Argument helpers for option objects: a missing or wrong-typed field is a TypeError naming it.
Napi::Object ArgOptions(const Napi::CallbackInfo& info, size_t i, const char* name);
uint32_t OptU32(const Napi::Object& o, const char* key, uint32_t fallback);
uint32_t ReqU32(const Napi::Object& o, const char* key);
std::string ReqStr(const Napi::Object& o, const char* key);
std::string OptStr(const Napi::Object& o, const char* key, const std::string& fallback);
bool OptBool(const Napi::Object& o, const char* key, bool fallback);
std::string ReqBytes(const Napi::Object& o, const char* key);
FdRef ReqFd(const Napi::Object& o, const char* key);
FdRef ArgFd(const Napi::CallbackInfo& info, size_t i, const char* name);

}  // namespace kmesh
