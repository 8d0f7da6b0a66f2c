// libbpf bindings (being written; see issue "eBPF datapath").
#include "common.h"
namespace kmesh {
void InitBpf(Napi::Env, Napi::Object) {}
}  // namespace kmesh
