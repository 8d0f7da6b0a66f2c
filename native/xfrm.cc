// NETLINK_XFRM bindings (being written; see issue "XFRM over netlink").
#include "common.h"
namespace kmesh {
void InitXfrm(Napi::Env, Napi::Object) {}
}  // namespace kmesh
