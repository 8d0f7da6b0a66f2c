// BpfFd (see bpf_fd.h) and the option-object argument helpers of the BPF bindings.
#include "bpf_fd.h"

namespace kmesh {

namespace {

// Per-environment data of the addon: the BpfFd constructor, for Wrap() and instanceof checks.
struct AddonData {
  Napi::FunctionReference bpfFd;
};

AddonData& Data(Napi::Env env) { return *env.GetInstanceData<AddonData>(); }

}  // namespace

BpfFd::BpfFd(const Napi::CallbackInfo& info) : Napi::ObjectWrap<BpfFd>(info) {
  if (info.Length() != 1 || !info[0].IsExternal()) {
    throw Napi::TypeError::New(info.Env(), "BpfFd objects are made by the addon, not by new BpfFd()");
  }
  ref_ = std::make_shared<const OwnedFd>(*info[0].As<Napi::External<int>>().Data());
}

void BpfFd::Init(Napi::Env env, Napi::Object target) {
  Napi::Function ctor = DefineClass(env, "BpfFd",
                                    {
                                        InstanceAccessor<&BpfFd::Fd>("fd"),
                                        InstanceAccessor<&BpfFd::Closed>("closed"),
                                        InstanceMethod<&BpfFd::Close>("close"),
                                    });
  auto* data = new AddonData();
  data->bpfFd = Napi::Persistent(ctor);
  env.SetInstanceData(data);
  target.Set("Fd", ctor);
}

Napi::Object BpfFd::Wrap(Napi::Env env, int fd) {
  int owned = fd;
  return Data(env).bpfFd.New({Napi::External<int>::New(env, &owned)});
}

FdRef BpfFd::Hold(Napi::Env env, const Napi::Value& value, const std::string& name) {
  if (!value.IsObject() || !value.As<Napi::Object>().InstanceOf(Data(env).bpfFd.Value())) {
    throw Napi::TypeError::New(env, name + " must be a BpfFd");
  }
  BpfFd* self = BpfFd::Unwrap(value.As<Napi::Object>());
  if (!self->ref_) throw Napi::TypeError::New(env, name + " is closed");
  return self->ref_;
}

Napi::Value BpfFd::Fd(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), ref_ ? ref_->get() : -1);
}

Napi::Value BpfFd::Closed(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), !ref_); }

// Drops this object's hold: the fd closes now, or when the last operation still running on it finishes.
Napi::Value BpfFd::Close(const Napi::CallbackInfo& info) {
  ref_.reset();
  return info.Env().Undefined();
}

Napi::Object ArgOptions(const Napi::CallbackInfo& info, size_t i, const char* name) {
  if (info.Length() <= i || !info[i].IsObject()) {
    throw Napi::TypeError::New(info.Env(), std::string(name) + " must be an object");
  }
  return info[i].As<Napi::Object>();
}

static Napi::TypeError FieldError(const Napi::Object& o, const char* key, const char* what) {
  return Napi::TypeError::New(o.Env(), std::string("option ") + key + " must be " + what);
}

uint32_t OptU32(const Napi::Object& o, const char* key, uint32_t fallback) {
  Napi::Value v = o.Get(key);
  if (v.IsUndefined()) return fallback;
  if (!v.IsNumber()) throw FieldError(o, key, "a number");
  return v.As<Napi::Number>().Uint32Value();
}

uint32_t ReqU32(const Napi::Object& o, const char* key) {
  if (o.Get(key).IsUndefined()) throw FieldError(o, key, "a number");
  return OptU32(o, key, 0);
}

std::string OptStr(const Napi::Object& o, const char* key, const std::string& fallback) {
  Napi::Value v = o.Get(key);
  if (v.IsUndefined()) return fallback;
  if (!v.IsString()) throw FieldError(o, key, "a string");
  return v.As<Napi::String>().Utf8Value();
}

std::string ReqStr(const Napi::Object& o, const char* key) {
  if (o.Get(key).IsUndefined()) throw FieldError(o, key, "a string");
  return OptStr(o, key, "");
}

bool OptBool(const Napi::Object& o, const char* key, bool fallback) {
  Napi::Value v = o.Get(key);
  if (v.IsUndefined()) return fallback;
  if (!v.IsBoolean()) throw FieldError(o, key, "a boolean");
  return v.As<Napi::Boolean>().Value();
}

std::string ReqBytes(const Napi::Object& o, const char* key) {
  Napi::Value v = o.Get(key);
  if (!v.IsBuffer()) throw FieldError(o, key, "a Buffer");
  auto b = v.As<Napi::Buffer<uint8_t>>();
  return std::string(reinterpret_cast<const char*>(b.Data()), b.Length());
}

FdRef ReqFd(const Napi::Object& o, const char* key) {
  return BpfFd::Hold(o.Env(), o.Get(key), std::string("option ") + key);
}

FdRef ArgFd(const Napi::CallbackInfo& info, size_t i, const char* name) {
  return BpfFd::Hold(info.Env(), info.Length() > i ? info[i] : info.Env().Undefined(), name);
}

}  // namespace kmesh
