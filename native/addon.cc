// Entry point of the kmesh_native addon: registers the BPF (libbpf) and XFRM (netlink) bindings.
#include "common.h"

static Napi::Object Init(Napi::Env env, Napi::Object exports) {
  kmesh::InitBpf(env, exports);
  kmesh::InitXfrm(env, exports);
  kmesh::InitXfrmEncode(env, exports);
  return exports;
}

NODE_API_MODULE(kmesh_native, Init)
