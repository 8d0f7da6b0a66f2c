// Entry point of the kmesh_native addon: registers the BPF (libbpf), XFRM (netlink, its change monitor, paged dumps) and file-lock (flock) bindings.
#include "common.h"

static Napi::Object Init(Napi::Env env, Napi::Object exports) {
  kmesh::InitBpf(env, exports);
  kmesh::InitXfrm(env, exports);
  kmesh::InitXfrmEncode(env, exports);
  kmesh::InitXfrmMonitor(env, exports);
  kmesh::InitXfrmDump(env, exports);
  kmesh::InitFileLock(env, exports);
  kmesh::InitPairKeys(env, exports);
  return exports;
}

NODE_API_MODULE(kmesh_native, Init)
