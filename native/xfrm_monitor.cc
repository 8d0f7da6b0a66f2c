// The XFRM change monitor of the kmesh_native addon: a NETLINK_XFRM socket inside a network namespace, bound
// to the multicast groups on which the kernel announces every change to its SA and policy tables (XFRMNLGRP_SA,
// XFRMNLGRP_POLICY; XFRMNLGRP_EXPIRE for lifetime expiries), whoever made it. Mechanical only: open the socket,
// drain what is queued without blocking, report each announcement's (type, seq, pid) and whether the socket
// overran (ENOBUFS: announcements were lost). Deciding which announcements were our own writes is TypeScript's
// (src/xfrm/netlink-monitor.ts): the kernel copies a request's nlmsg_seq and nlmsg_pid into its announcement.
//
// JS: xfrmMonitor.open(netnsPath: string): number        the socket's fd (CAP_NET_ADMIN needed for the groups)
//     xfrmMonitor.drain(fd: number): { events: Uint32Array, overrun: boolean }
//                                      events: (nlmsg_type, nlmsg_seq, nlmsg_pid) triples, in arrival order;
//                                      at most kMaxEvents (then overrun is true, the rest is read and dropped)
//     xfrmMonitor.close(fd: number): void
//   rejects/throws: kmesh::ErrnoError for socket-level failures (namespace, socket, bind, recv).
#include <linux/netlink.h>
#include <linux/xfrm.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdint>
#include <string>
#include <vector>

#include "common.h"

namespace kmesh {
namespace {

constexpr int kMonitorBufferBytes = 32 << 20;  // room for the announcements of a large apply between two drains
constexpr size_t kRecvBytes = 64 * 1024;
constexpr size_t kMaxEvents = 1 << 20;

constexpr uint32_t GroupBit(int group) { return 1u << (group - 1); }

Napi::Value Open(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() != 1 || !info[0].IsString()) throw Napi::TypeError::New(env, "xfrmMonitor.open(netnsPath: string)");
  const std::string netns = info[0].As<Napi::String>().Utf8Value();
  int err = 0;
  std::string op, object;
  const int fd = OpenXfrmSocketIn(netns, &err, &op, &object);
  if (fd < 0) throw ErrnoError(env, err, op, object);
  int bytes = kMonitorBufferBytes;
  if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &bytes, sizeof(bytes)) != 0) {
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &bytes, sizeof(bytes));
  }
  sockaddr_nl local{};
  local.nl_family = AF_NETLINK;
  local.nl_groups = GroupBit(XFRMNLGRP_SA) | GroupBit(XFRMNLGRP_POLICY) | GroupBit(XFRMNLGRP_EXPIRE);
  if (bind(fd, reinterpret_cast<sockaddr*>(&local), sizeof(local)) != 0) {
    const int e = errno;
    close(fd);
    throw ErrnoError(env, e, "bind", "NETLINK_XFRM groups sa,policy,expire" + (netns.empty() ? "" : " in " + netns));
  }
  return Napi::Number::New(env, fd);
}

Napi::Value Drain(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() != 1 || !info[0].IsNumber()) throw Napi::TypeError::New(env, "xfrmMonitor.drain(fd: number)");
  const int fd = info[0].As<Napi::Number>().Int32Value();
  std::vector<uint32_t> events;
  bool overrun = false;
  std::vector<uint8_t> buf(kRecvBytes);
  for (;;) {
    const ssize_t n = recv(fd, buf.data(), buf.size(), MSG_DONTWAIT);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) break;
      if (errno == ENOBUFS) {  // the kernel dropped announcements; the socket goes on with the next ones
        overrun = true;
        continue;
      }
      throw ErrnoError(env, errno, "recv", "XFRM monitor fd " + std::to_string(fd));
    }
    size_t left = static_cast<size_t>(n);
    for (auto* h = reinterpret_cast<nlmsghdr*>(buf.data()); NLMSG_OK(h, left); h = NLMSG_NEXT(h, left)) {
      if (events.size() >= 3 * kMaxEvents) {
        overrun = true;
        continue;
      }
      events.push_back(h->nlmsg_type);
      events.push_back(h->nlmsg_seq);
      events.push_back(h->nlmsg_pid);
    }
  }
  Napi::Uint32Array out = Napi::Uint32Array::New(env, events.size());
  for (size_t i = 0; i < events.size(); i++) out[i] = events[i];
  Napi::Object result = Napi::Object::New(env);
  result.Set("events", out);
  result.Set("overrun", Napi::Boolean::New(env, overrun));
  return result;
}

Napi::Value Close(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() != 1 || !info[0].IsNumber()) throw Napi::TypeError::New(env, "xfrmMonitor.close(fd: number)");
  close(info[0].As<Napi::Number>().Int32Value());
  return env.Undefined();
}

}  // namespace

void InitXfrmMonitor(Napi::Env env, Napi::Object exports) {
  Napi::Object monitor = Napi::Object::New(env);
  monitor.Set("open", Napi::Function::New(env, Open, "open"));
  monitor.Set("drain", Napi::Function::New(env, Drain, "drain"));
  monitor.Set("close", Napi::Function::New(env, Close, "close"));
  exports.Set("xfrmMonitor", monitor);
}

}  // namespace kmesh
