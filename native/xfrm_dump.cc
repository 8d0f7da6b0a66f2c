// Paged NETLINK_XFRM dumps of the kmesh_native addon. A whole-table dump in one reply (xfrmTransact) is held whole
// while TypeScript decodes it: at 20,000 SAs ~8 MiB of reply beside ~8 MiB of decoded SAs. Here the socket stays
// open between calls and each call reads only the next page of the dump: the kernel builds a dump's next datagram
// only when the previous one has been read, so nothing waits in between, and the caller holds one page at a time.
// Mechanical only: open, send, receive whole datagrams, keep the messages answering the dump's sequence number.
//
// JS: xfrmDump.open(netnsPath: string, request: Buffer): number
//       netnsPath: "" for the caller's namespace, else a namespace file such as /run/netns/NAME.
//       request:   one netlink message with NLM_F_DUMP set; it is sent before open returns.
//       returns:   the socket's fd, for next and close.
//     xfrmDump.next(fd: number, seq: number, minBytes: number): Promise<Buffer>
//       resolves with the next replies whose sequence number is `seq`, whole messages in order: at least minBytes
//       of them, unless the dump ended first (its NLMSG_DONE, or an NLMSG_ERROR, is then the page's last message).
//       Runs on a libuv worker thread. One call at a time per fd; close only once it has settled.
//     xfrmDump.close(fd: number): void
//   throws/rejects: kmesh::ErrnoError for socket-level failures (namespace, socket, send, receive, timeout).
#include <linux/netlink.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "common.h"
#include "netlink_recv.h"

namespace kmesh {
namespace {

constexpr size_t kRecvBufferBytes = 64 * 1024;  // a dump datagram is at most ~32 KiB
constexpr int kReplyTimeoutSeconds = 30;        // silence this long in the middle of a dump = failure
constexpr size_t kMaxPageBytes = 64 << 20;

class DumpPageWorker : public Napi::AsyncWorker {
 public:
  DumpPageWorker(Napi::Env env, int fd, uint32_t seq, size_t min_bytes)
      : Napi::AsyncWorker(env), deferred_(Napi::Promise::Deferred::New(env)), fd_(fd), seq_(seq), min_(min_bytes) {}

  Napi::Promise Promise() const { return deferred_.Promise(); }

 protected:
  void Execute() override {
    std::vector<uint8_t> buf(kRecvBufferBytes);
    page_.reserve(min_ + kRecvBufferBytes);
    bool ended = false;
    while (!ended && page_.size() < min_) {
      bool from_kernel = false;
      ssize_t got = RecvNetlinkDatagram(fd_, buf.data(), buf.size(), &from_kernel);
      if (got < 0) {
        if (got == -EAGAIN) {
          err_ = {ETIMEDOUT, "recvmsg", "NETLINK_XFRM dump (no reply for " + std::to_string(kReplyTimeoutSeconds) + " s)"};
        } else if (got == -EMSGSIZE) {
          err_ = {EMSGSIZE, "recvmsg", "NETLINK_XFRM dump (reply datagram truncated)"};
        } else {
          err_ = {static_cast<int>(-got), "recvmsg", "NETLINK_XFRM dump"};
        }
        return;
      }
      if (!from_kernel) continue;  // only the kernel answers us
      size_t off = 0;
      const size_t len = static_cast<size_t>(got);
      while (!ended && off + sizeof(nlmsghdr) <= len) {
        nlmsghdr hdr;
        std::memcpy(&hdr, buf.data() + off, sizeof(hdr));
        if (hdr.nlmsg_len < sizeof(nlmsghdr) || off + hdr.nlmsg_len > len) break;
        if (hdr.nlmsg_seq == seq_) {
          page_.insert(page_.end(), buf.data() + off, buf.data() + off + hdr.nlmsg_len);
          page_.insert(page_.end(), NLMSG_ALIGN(hdr.nlmsg_len) - hdr.nlmsg_len, 0);
          ended = hdr.nlmsg_type == NLMSG_DONE || hdr.nlmsg_type == NLMSG_ERROR;
        }
        off += NLMSG_ALIGN(hdr.nlmsg_len);
      }
    }
  }

  void OnOK() override {
    Napi::Env env = Env();
    if (err_.err != 0) {
      deferred_.Reject(ErrnoError(env, err_.err, err_.op, err_.object).Value());
      return;
    }
    deferred_.Resolve(Napi::Buffer<uint8_t>::Copy(env, page_.data(), page_.size()));
  }

  void OnError(const Napi::Error& e) override { deferred_.Reject(e.Value()); }

 private:
  struct Failure {
    int err = 0;
    std::string op;
    std::string object;
  };
  Napi::Promise::Deferred deferred_;
  int fd_;
  uint32_t seq_;
  size_t min_;
  std::vector<uint8_t> page_;
  Failure err_;
};

Napi::Value Open(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() != 2 || !info[0].IsString() || !info[1].IsBuffer()) {
    throw Napi::TypeError::New(env, "xfrmDump.open(netnsPath: string, request: Buffer) expected");
  }
  const std::string netns = info[0].As<Napi::String>().Utf8Value();
  auto request = info[1].As<Napi::Buffer<uint8_t>>();
  nlmsghdr hdr{};
  if (request.Length() < sizeof(hdr)) throw Napi::TypeError::New(env, "xfrmDump.open: request is not a netlink message");
  std::memcpy(&hdr, request.Data(), sizeof(hdr));
  if (hdr.nlmsg_len < sizeof(hdr) || NLMSG_ALIGN(hdr.nlmsg_len) < request.Length() || hdr.nlmsg_len > request.Length()) {
    throw Napi::TypeError::New(env, "xfrmDump.open: request must be exactly one netlink message");
  }
  if ((hdr.nlmsg_flags & NLM_F_DUMP) != NLM_F_DUMP) {
    throw Napi::TypeError::New(env, "xfrmDump.open: request lacks NLM_F_DUMP");
  }
  int err = 0;
  std::string op, object;
  const int fd = OpenXfrmSocketIn(netns, &err, &op, &object);
  if (fd < 0) throw ErrnoError(env, err, op, object);
  int one = 1;
  setsockopt(fd, SOL_NETLINK, NETLINK_EXT_ACK, &one, sizeof(one));  // a failed dump's NLMSG_ERROR carries the text
  timeval tv{kReplyTimeoutSeconds, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  sockaddr_nl kernel{};
  kernel.nl_family = AF_NETLINK;
  ssize_t sent;
  do {
    sent = sendto(fd, request.Data(), request.Length(), 0, reinterpret_cast<sockaddr*>(&kernel), sizeof(kernel));
  } while (sent < 0 && errno == EINTR);
  if (sent < 0) {
    const int e = errno;
    close(fd);
    throw ErrnoError(env, e, "sendto", "NETLINK_XFRM dump request" + (netns.empty() ? "" : " in " + netns));
  }
  return Napi::Number::New(env, fd);
}

Napi::Value Next(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() != 3 || !info[0].IsNumber() || !info[1].IsNumber() || !info[2].IsNumber()) {
    throw Napi::TypeError::New(env, "xfrmDump.next(fd: number, seq: number, minBytes: number) expected");
  }
  const int fd = info[0].As<Napi::Number>().Int32Value();
  const double seq = info[1].As<Napi::Number>().DoubleValue();
  const double min_bytes = info[2].As<Napi::Number>().DoubleValue();
  if (fd < 0 || seq < 0 || seq > 0xffffffff || min_bytes < 1 || min_bytes > static_cast<double>(kMaxPageBytes)) {
    throw Napi::RangeError::New(env, "xfrmDump.next: fd >= 0, seq in 0..2^32-1 and minBytes in 1..64 MiB expected");
  }
  auto* worker = new DumpPageWorker(env, fd, static_cast<uint32_t>(seq), static_cast<size_t>(min_bytes));
  Napi::Promise promise = worker->Promise();
  worker->Queue();
  return promise;
}

Napi::Value Close(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() != 1 || !info[0].IsNumber()) throw Napi::TypeError::New(env, "xfrmDump.close(fd: number)");
  close(info[0].As<Napi::Number>().Int32Value());
  return env.Undefined();
}

}  // namespace

void InitXfrmDump(Napi::Env env, Napi::Object exports) {
  Napi::Object dump = Napi::Object::New(env);
  dump.Set("open", Napi::Function::New(env, Open, "open"));
  dump.Set("next", Napi::Function::New(env, Next, "next"));
  dump.Set("close", Napi::Function::New(env, Close, "close"));
  exports.Set("xfrmDump", dump);
}

}  // namespace kmesh
