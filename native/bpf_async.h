// Promise-returning AsyncWorker for the BPF bindings: the blocking part runs on a libuv pool thread and may
// fail with (errno, operation, object); the result is converted to JS on the main thread. Also: the netns
// switch used by interface-level calls, and capture of libbpf's log for error messages.
#pragma once

#include <fcntl.h>
#include <sched.h>
#include <unistd.h>

#include <functional>
#include <string>

#include "common.h"

namespace kmesh {

// A failure inside Execute(): errno (positive) plus what was being done to what.
struct BpfFailure {
  int err = 0;
  std::string op;
  std::string object;
};

// libbpf's messages of the current worker thread (verifier log, map reuse complaints), kept for error reports.
std::string TakeLibbpfLog();
void ClearLibbpfLog();

class PromiseWorker : public Napi::AsyncWorker {
 public:
  using Work = std::function<void(BpfFailure&)>;
  using Done = std::function<Napi::Value(Napi::Env)>;

  PromiseWorker(Napi::Env env, Work work, Done done)
      : Napi::AsyncWorker(env), deferred_(Napi::Promise::Deferred::New(env)), work_(std::move(work)),
        done_(std::move(done)) {}

  Napi::Promise Promise() { return deferred_.Promise(); }

  void Execute() override {
    ClearLibbpfLog();
    work_(failure_);
    if (failure_.err != 0) {
      log_ = TakeLibbpfLog();
      SetError(failure_.op);
    }
  }
  void OnOK() override {
    Napi::Env env = Env();
    try {
      deferred_.Resolve(done_(env));
    } catch (const Napi::Error& e) {
      deferred_.Reject(e.Value());
    }
  }
  void OnError(const Napi::Error&) override {
    Napi::Env env = Env();
    Napi::Error e = ErrnoError(env, failure_.err, failure_.op, failure_.object);
    if (!log_.empty()) e.Set("libbpfLog", Napi::String::New(env, log_));
    deferred_.Reject(e.Value());
  }

 private:
  Napi::Promise::Deferred deferred_;
  Work work_;
  Done done_;
  BpfFailure failure_;
  std::string log_;
};

inline Napi::Promise RunAsync(Napi::Env env, PromiseWorker::Work work, PromiseWorker::Done done) {
  auto* w = new PromiseWorker(env, std::move(work), std::move(done));
  Napi::Promise p = w->Promise();
  w->Queue();
  return p;
}

// Enters the network namespace at `path` on the calling (worker) thread and returns to the previous one on
// scope exit. An empty path means "stay where we are". ok() is false (with err set) if entering failed.
class NetnsGuard {
 public:
  explicit NetnsGuard(const std::string& path) {
    if (path.empty()) return;
    prev_ = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
    if (prev_ < 0) {
      err_ = errno;
      return;
    }
    int target = open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (target < 0 || setns(target, CLONE_NEWNET) != 0) {
      err_ = errno;
      if (target >= 0) close(target);
      close(prev_);
      prev_ = -1;
      return;
    }
    close(target);
  }
  ~NetnsGuard() {
    if (prev_ >= 0) {
      // Returning to the thread's own namespace cannot fail for a still-open nsfs fd; if it ever did, the
      // pool thread would keep serving in the wrong netns, so treat it as fatal.
      if (setns(prev_, CLONE_NEWNET) != 0) abort();
      close(prev_);
    }
  }
  NetnsGuard(const NetnsGuard&) = delete;
  NetnsGuard& operator=(const NetnsGuard&) = delete;
  bool ok() const { return err_ == 0; }
  int err() const { return err_; }

 private:
  int prev_ = -1;
  int err_ = 0;
};

}  // namespace kmesh

namespace kmesh {

// Argument helpers: a wrong argument type is a programming error, reported as a TypeError naming it.
inline uint32_t ArgU32(const Napi::CallbackInfo& info, size_t i, const char* name) {
  if (info.Length() <= i || !info[i].IsNumber()) {
    throw Napi::TypeError::New(info.Env(), std::string(name) + " must be a number");
  }
  return info[i].As<Napi::Number>().Uint32Value();
}
inline int32_t ArgI32(const Napi::CallbackInfo& info, size_t i, const char* name) {
  if (info.Length() <= i || !info[i].IsNumber()) {
    throw Napi::TypeError::New(info.Env(), std::string(name) + " must be a number");
  }
  return info[i].As<Napi::Number>().Int32Value();
}
inline std::string ArgStr(const Napi::CallbackInfo& info, size_t i, const char* name) {
  if (info.Length() <= i || !info[i].IsString()) {
    throw Napi::TypeError::New(info.Env(), std::string(name) + " must be a string");
  }
  return info[i].As<Napi::String>().Utf8Value();
}
inline std::string ArgBytes(const Napi::CallbackInfo& info, size_t i, const char* name) {
  if (info.Length() <= i || !info[i].IsBuffer()) {
    throw Napi::TypeError::New(info.Env(), std::string(name) + " must be a Buffer");
  }
  auto b = info[i].As<Napi::Buffer<uint8_t>>();
  return std::string(reinterpret_cast<const char*>(b.Data()), b.Length());
}
inline Napi::Buffer<uint8_t> ToBuffer(Napi::Env env, const std::string& bytes) {
  return Napi::Buffer<uint8_t>::Copy(env, reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
}

void InitBpfTc(Napi::Env env, Napi::Object exports);

}  // namespace kmesh
