// libbpf bindings, interface level: TC ingress attach/query/detach as a clsact cls_bpf filter (any kernel) or
// as a TCX link (kernel 6.6+), interface name/index lookup; each optionally inside another network namespace
// (entered on the worker thread only). Programs and links are BpfFd objects (bpf_fd.h); calls with more than two
// parameters take one option object. Mechanical only: the choice of mode, handles, pins and the registry of
// what is ours live in src/datapath/.
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <net/if.h>
#include <sys/syscall.h>

#include <climits>
#include <memory>

#include "bpf_async.h"
#include "bpf_fd.h"

namespace kmesh {

// Not in the uapi headers of Debian 12's libbpf-dev (kernel 6.1 era): TCX attach types and mprog flags (6.6+).
static constexpr uint32_t kBpfTcxIngress = 46;
static constexpr uint32_t kBpfFBefore = 1U << 3;

// The BPF_LINK_CREATE part of union bpf_attr as 6.6+ lays it out for TCX.
struct TcxLinkCreateAttr {
  uint32_t prog_fd;
  uint32_t target_ifindex;
  uint32_t attach_type;
  uint32_t flags;
  uint32_t relative_fd;
  uint32_t pad;
  uint64_t expected_revision;
};

static std::string Where(const std::string& label, const std::string& netns) {
  return netns.empty() ? label : label + " in netns " + netns;
}

// Runs fn(f) inside netns (if given); a failure to enter the namespace is reported as such.
template <typename Fn>
static void InNetns(const std::string& netns, BpfFailure& f, Fn fn) {
  NetnsGuard guard(netns);
  if (!guard.ok()) {
    f = {guard.err(), "enter netns", netns};
    return;
  }
  fn();
}

// ifindex(name, netns) -> Promise<number>
static Napi::Value IfIndex(const Napi::CallbackInfo& info) {
  std::string name = ArgStr(info, 0, "interface name");
  std::string netns = ArgStr(info, 1, "netns path");
  auto idx = std::make_shared<unsigned>(0);
  return RunAsync(
      info.Env(),
      [=](BpfFailure& f) {
        InNetns(netns, f, [&] {
          *idx = if_nametoindex(name.c_str());
          if (*idx == 0) f = {errno, "find interface", Where(name, netns)};
        });
      },
      [=](Napi::Env env) { return Napi::Number::New(env, *idx); });
}

// ifname(index, netns) -> Promise<string | null> (null: no such interface)
static Napi::Value IfName(const Napi::CallbackInfo& info) {
  uint32_t index = ArgU32(info, 0, "ifindex");
  std::string netns = ArgStr(info, 1, "netns path");
  auto name = std::make_shared<std::string>();
  return RunAsync(
      info.Env(),
      [=](BpfFailure& f) {
        InNetns(netns, f, [&] {
          char buf[IF_NAMESIZE] = {};
          if (if_indextoname(index, buf)) {
            *name = buf;
          } else if (errno != ENXIO && errno != ENODEV) {
            f = {errno, "find interface", Where("ifindex " + std::to_string(index), netns)};
          }
        });
      },
      [=](Napi::Env env) -> Napi::Value {
        return name->empty() ? env.Null() : Napi::Value(Napi::String::New(env, *name));
      });
}

// clsactAttach({ ifindex, prog: BpfFd, netns?, handle?, priority?, replace?, label })
//   -> Promise<{handle, priority, progId}>
// Creates the clsact qdisc if missing (an existing one is shared, never replaced), then adds a direct-action
// cls_bpf filter on ingress. handle/priority 0 (the default) let the kernel pick free ones (it never reuses another
// filter's slot: NLM_F_EXCL); replace: true swaps the program of the filter at exactly (handle, priority).
static Napi::Value ClsactAttach(const Napi::CallbackInfo& info) {
  Napi::Object o = ArgOptions(info, 0, "clsactAttach options");
  uint32_t ifindex = ReqU32(o, "ifindex");
  FdRef prog = ReqFd(o, "prog");
  std::string netns = OptStr(o, "netns", "");
  uint32_t handle = OptU32(o, "handle", 0);
  uint32_t priority = OptU32(o, "priority", 0);
  bool replace = OptBool(o, "replace", false);
  std::string label = ReqStr(o, "label");
  auto out = std::make_shared<bpf_tc_opts>();
  return RunAsync(
      info.Env(),
      [=](BpfFailure& f) {
        InNetns(netns, f, [&] {
          LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = static_cast<int>(ifindex), .attach_point = BPF_TC_INGRESS);
          int err = bpf_tc_hook_create(&hook);
          if (err && err != -EEXIST) {
            f = {-err, "create clsact qdisc on", Where(label, netns)};
            return;
          }
          LIBBPF_OPTS(bpf_tc_opts, opts, .prog_fd = prog->get(), .flags = replace ? static_cast<__u32>(BPF_TC_F_REPLACE) : 0u,
                      .handle = handle, .priority = priority);
          err = bpf_tc_attach(&hook, &opts);
          if (err) {
            f = {-err, replace ? "replace clsact ingress filter on" : "attach clsact ingress filter to",
                 Where(label, netns)};
            return;
          }
          *out = opts;
        });
      },
      [=](Napi::Env env) -> Napi::Value {
        Napi::Object o = Napi::Object::New(env);
        o.Set("handle", out->handle);
        o.Set("priority", out->priority);
        o.Set("progId", out->prog_id);
        return o;
      });
}

// The { ifindex, handle, priority, netns?, label } object that names one clsact ingress filter.
struct IngressFilterArgs {
  uint32_t ifindex, handle, priority;
  std::string netns, label;
};

static IngressFilterArgs ArgIngressFilter(const Napi::CallbackInfo& info) {
  Napi::Object o = ArgOptions(info, 0, "clsact filter");
  return {ReqU32(o, "ifindex"), ReqU32(o, "handle"), ReqU32(o, "priority"), OptStr(o, "netns", ""),
          ReqStr(o, "label")};
}

// Runs op(hook, opts) (bpf_tc_query or bpf_tc_detach) on the filter `a` names, inside its netns. True when the
// filter was there; false when it, its device (ENODEV) or its clsact qdisc is gone (EINVAL: the device was
// re-created or the qdisc deleted); any other error fills f with `what` and where.
template <typename Op>
static bool OnIngressFilter(const IngressFilterArgs& a, BpfFailure& f, const char* what, Op op) {
  bool found = false;
  InNetns(a.netns, f, [&] {
    LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = static_cast<int>(a.ifindex), .attach_point = BPF_TC_INGRESS);
    LIBBPF_OPTS(bpf_tc_opts, opts, .handle = a.handle, .priority = a.priority);
    int err = op(&hook, &opts);
    if (err == 0) {
      found = true;
    } else if (err != -ENOENT && err != -ENODEV && err != -EINVAL) {
      f = {-err, what, Where(a.label, a.netns)};
    }
  });
  return found;
}

// clsactQuery(filter) -> Promise<progId> (0: no such filter / device)
static Napi::Value ClsactQuery(const Napi::CallbackInfo& info) {
  IngressFilterArgs a = ArgIngressFilter(info);
  auto progId = std::make_shared<uint32_t>(0);
  return RunAsync(
      info.Env(),
      [=](BpfFailure& f) {
        OnIngressFilter(a, f, "query clsact ingress filter on", [&](bpf_tc_hook* hook, bpf_tc_opts* opts) {
          int err = bpf_tc_query(hook, opts);
          if (err == 0) *progId = opts->prog_id;
          return err;
        });
      },
      [=](Napi::Env env) { return Napi::Number::New(env, *progId); });
}

// clsactDetach(filter) -> Promise<boolean> (false: it was already gone).
// Removes exactly the filter at (handle, priority); the qdisc and other filters stay.
static Napi::Value ClsactDetach(const Napi::CallbackInfo& info) {
  IngressFilterArgs a = ArgIngressFilter(info);
  auto removed = std::make_shared<bool>(false);
  return RunAsync(
      info.Env(),
      [=](BpfFailure& f) { *removed = OnIngressFilter(a, f, "detach clsact ingress filter from", bpf_tc_detach); },
      [=](Napi::Env env) { return Napi::Boolean::New(env, *removed); });
}

static int TcxLinkCreate(int progFd, uint32_t ifindex) {
  TcxLinkCreateAttr attr = {};
  attr.prog_fd = static_cast<uint32_t>(progFd);
  attr.target_ifindex = ifindex;
  attr.attach_type = kBpfTcxIngress;
  attr.flags = kBpfFBefore;  // first in the chain; we return TCX_NEXT so everything after us still runs
  return static_cast<int>(syscall(__NR_bpf, BPF_LINK_CREATE, &attr, sizeof(attr)));
}

// tcxSupported(prog: BpfFd) -> Promise<boolean>. Probes with an interface index that cannot exist: kernels with
// TCX answer ENODEV (attach type known, device missing), older ones EINVAL (attach type unknown).
static Napi::Value TcxSupported(const Napi::CallbackInfo& info) {
  FdRef prog = ArgFd(info, 0, "program");
  auto supported = std::make_shared<bool>(false);
  return RunAsync(
      info.Env(),
      [=](BpfFailure& f) {
        int fd = TcxLinkCreate(prog->get(), INT_MAX);
        if (fd >= 0) {
          close(fd);
          *supported = true;
        } else if (errno == ENODEV) {
          *supported = true;
        } else if (errno != EINVAL) {
          f = {errno, "probe TCX support with", "program fd " + std::to_string(prog->get())};
        }
      },
      [=](Napi::Env env) { return Napi::Boolean::New(env, *supported); });
}

// tcxAttach({ ifindex, prog: BpfFd, netns?, label }) -> Promise<BpfFd of the link>: a TCX ingress link placed
// first on the device.
static Napi::Value TcxAttach(const Napi::CallbackInfo& info) {
  Napi::Object o = ArgOptions(info, 0, "tcxAttach options");
  uint32_t ifindex = ReqU32(o, "ifindex");
  FdRef prog = ReqFd(o, "prog");
  std::string netns = OptStr(o, "netns", "");
  std::string label = ReqStr(o, "label");
  auto linkFd = std::make_shared<int>(-1);
  return RunAsync(
      info.Env(),
      [=](BpfFailure& f) {
        InNetns(netns, f, [&] {
          *linkFd = TcxLinkCreate(prog->get(), ifindex);
          if (*linkFd < 0) f = {errno, "attach TCX ingress link to", Where(label, netns)};
        });
      },
      [=](Napi::Env env) { return BpfFd::Wrap(env, *linkFd); });
}

// linkUpdate({ link: BpfFd, prog: BpfFd, label }) -> Promise<void>: atomically swap the program behind a link.
static Napi::Value LinkUpdate(const Napi::CallbackInfo& info) {
  Napi::Object o = ArgOptions(info, 0, "linkUpdate options");
  FdRef link = ReqFd(o, "link");
  FdRef prog = ReqFd(o, "prog");
  std::string label = ReqStr(o, "label");
  return RunAsync(
      info.Env(),
      [=](BpfFailure& f) {
        if (bpf_link_update(link->get(), prog->get(), nullptr)) f = {errno, "update program of link", label};
      },
      [](Napi::Env env) { return env.Undefined(); });
}

// linkDetach(link: BpfFd, label) -> Promise<void>: detach now, whoever else still holds the link.
static Napi::Value LinkDetach(const Napi::CallbackInfo& info) {
  FdRef link = ArgFd(info, 0, "link");
  std::string label = ArgStr(info, 1, "label");
  return RunAsync(
      info.Env(),
      [=](BpfFailure& f) {
        // ENOLINK: the link is already defunct (its device went away).
        if (bpf_link_detach(link->get()) && errno != ENOLINK) f = {errno, "detach link", label};
      },
      [](Napi::Env env) { return env.Undefined(); });
}

void InitBpfTc(Napi::Env env, Napi::Object bpf) {
  bpf.Set("ifindex", Napi::Function::New(env, IfIndex, "ifindex"));
  bpf.Set("ifname", Napi::Function::New(env, IfName, "ifname"));
  bpf.Set("clsactAttach", Napi::Function::New(env, ClsactAttach, "clsactAttach"));
  bpf.Set("clsactQuery", Napi::Function::New(env, ClsactQuery, "clsactQuery"));
  bpf.Set("clsactDetach", Napi::Function::New(env, ClsactDetach, "clsactDetach"));
  bpf.Set("tcxSupported", Napi::Function::New(env, TcxSupported, "tcxSupported"));
  bpf.Set("tcxAttach", Napi::Function::New(env, TcxAttach, "tcxAttach"));
  bpf.Set("linkUpdate", Napi::Function::New(env, LinkUpdate, "linkUpdate"));
  bpf.Set("linkDetach", Napi::Function::New(env, LinkDetach, "linkDetach"));
}

}  // namespace kmesh
