// NETLINK_XFRM transport of the kmesh_native addon. Mechanical only: the TypeScript codec builds the request
// (any number of netlink messages back to back), this file opens a NETLINK_XFRM socket inside the chosen network
// namespace, sends the messages in as few sendmsg calls as the socket buffers allow, and collects every reply that
// belongs to them (data messages, NLMSG_ERROR acks with extack TLVs, NLMSG_DONE ending dumps). The raw reply bytes
// go back to TypeScript, which decodes them. Runs on a libuv worker thread (Napi::AsyncWorker).
//
// Acks: the kernel processes all messages of one sendmsg in order before sendmsg returns, and answers a failed
// message with NLMSG_ERROR whether or not it asked for an ack. So within each sendmsg only the last non-dump
// message keeps NLM_F_ACK; the others have it cleared, and once that last ack arrived (every earlier reply is
// queued before it), each of them that got no NLMSG_ERROR succeeded and gets the plain ack the kernel would have
// sent (errno 0, request header echoed, NLM_F_CAPPED). One ack skb and recvmsg per sendmsg instead of per message.
//
// JS: xfrmTransact(netnsPath: string, request: Buffer, errnos?: Int32Array): Promise<Buffer>
//   netnsPath: "" for the caller's namespace, else a namespace file such as /run/netns/NAME or /proc/PID/ns/net.
//   request:   netlink messages; every non-dump message must carry NLM_F_ACK and sequence numbers must be unique,
//              so that each message has exactly one terminal reply (NLMSG_ERROR, or NLMSG_DONE for a dump).
//   resolves:  the concatenated reply messages whose sequence number belongs to the request, with exactly one
//              NLMSG_ERROR per non-dump message (the kernel's, or the synthesized plain ack described above).
//   errnos:    optional, at least one entry per message: on success each non-dump message's entry is set to its
//              outcome (0, or the positive errno of its NLMSG_ERROR; dump entries are left as they were), and the
//              plain acks above are then not synthesized: the reply holds only what the kernel sent (errors, and
//              the one ack per sendmsg). For a caller with thousands of messages that is thousands of acks fewer
//              to copy and parse.
//   rejects:   kmesh::ErrnoError for socket-level failures (namespace, socket, send, receive, timeout, overrun).
#include <fcntl.h>
#include <linux/netlink.h>
#include <sched.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "common.h"
#include "netlink_recv.h"

namespace kmesh {
namespace {

constexpr size_t kRecvBufferBytes = 64 * 1024;     // a dump datagram is at most ~32 KiB
constexpr size_t kAckBudgetBytes = 2048;           // receive-buffer room reserved per expected reply skb
constexpr int kMaxSocketBufferBytes = 64 << 20;    // never ask for more than 64 MiB per direction
constexpr int kReplyTimeoutSeconds = 30;           // silence this long while replies are missing = failure

struct Message {
  size_t offset;
  size_t length;  // aligned length within the request
  uint32_t seq;
  bool dump;
};

// Result of the blocking part; err != 0 means the call failed at `op` on `object`.
struct Failure {
  int err = 0;
  std::string op;
  std::string object;
};

class FdGuard {
 public:
  explicit FdGuard(int fd) : fd_(fd) {}
  ~FdGuard() {
    if (fd_ >= 0) close(fd_);
  }
  FdGuard(const FdGuard&) = delete;
  FdGuard& operator=(const FdGuard&) = delete;
  int get() const { return fd_; }

 private:
  int fd_;
};

// Opens the socket in the namespace at `path` from a short-lived thread, so no pooled thread ever changes namespace.
// A netlink socket stays bound to the namespace it was created in.
int OpenSocketIn(const std::string& path, Failure* f) {
  if (path.empty()) {
    int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_XFRM);
    if (fd < 0) *f = {errno, "socket", "NETLINK_XFRM"};
    return fd;
  }
  int result = -1;
  std::thread worker([&]() {
    int ns = open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (ns < 0) {
      *f = {errno, "open", "netns " + path};
      return;
    }
    if (setns(ns, CLONE_NEWNET) != 0) {
      *f = {errno, "setns", "netns " + path};
      close(ns);
      return;
    }
    close(ns);
    result = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_XFRM);
    if (result < 0) *f = {errno, "socket", "NETLINK_XFRM in netns " + path};
  });
  worker.join();
  return result;
}

// Raises a socket buffer: the privileged *FORCE variant first (ignores net.core.*mem_max), then the plain one.
int RaiseBuffer(int fd, int force_opt, int opt, size_t want) {
  int bytes = static_cast<int>(std::min<size_t>(want, kMaxSocketBufferBytes));
  if (setsockopt(fd, SOL_SOCKET, force_opt, &bytes, sizeof(bytes)) != 0) {
    setsockopt(fd, SOL_SOCKET, opt, &bytes, sizeof(bytes));
  }
  int actual = 0;
  socklen_t len = sizeof(actual);
  getsockopt(fd, SOL_SOCKET, opt, &actual, &len);  // the kernel reports twice what it accounts against
  return actual;
}

// The port id the kernel bound the socket to on its first send; 0 if it cannot be read.
uint32_t PortIdOf(int fd) {
  sockaddr_nl self{};
  socklen_t len = sizeof(self);
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&self), &len) != 0) return 0;
  return self.nl_pid;
}

class XfrmTransactWorker : public Napi::AsyncWorker {
 public:
  XfrmTransactWorker(Napi::Env env, std::string netns, std::vector<uint8_t> request, std::vector<Message> messages,
                     Napi::Value errnos)
      : Napi::AsyncWorker(env),
        deferred_(Napi::Promise::Deferred::New(env)),
        netns_(std::move(netns)),
        request_(std::move(request)),
        messages_(std::move(messages)) {
    if (errnos.IsTypedArray()) {
      errnos_ref_ = Napi::Persistent(errnos.As<Napi::Object>());
      outcomes_.assign(messages_.size(), kNoOutcome);
    }
  }

  Napi::Promise Promise() const { return deferred_.Promise(); }

 protected:
  void Execute() override {
    int raw = OpenSocketIn(netns_, &failure_);
    if (raw < 0) return;
    FdGuard fd(raw);

    int one = 1;
    // Extended acks carry the kernel's error text; capped acks do not echo our request back.
    setsockopt(fd.get(), SOL_NETLINK, NETLINK_EXT_ACK, &one, sizeof(one));
    setsockopt(fd.get(), SOL_NETLINK, NETLINK_CAP_ACK, &one, sizeof(one));

    size_t want_snd = request_.size() + 64 * 1024;
    size_t want_rcv = messages_.size() * kAckBudgetBytes + 1024 * 1024;
    int sndbuf = RaiseBuffer(fd.get(), SO_SNDBUFFORCE, SO_SNDBUF, want_snd);
    int rcvbuf = RaiseBuffer(fd.get(), SO_RCVBUFFORCE, SO_RCVBUF, want_rcv);
    // What one sendmsg may carry: the kernel refuses len > sndbuf - 32; every reply of it must fit the receive queue.
    size_t max_bytes = std::max<size_t>(static_cast<size_t>(sndbuf) / 2, 4096);
    size_t max_msgs = std::max<size_t>(static_cast<size_t>(rcvbuf) / 2 / kAckBudgetBytes, 1);

    timeval tv{kReplyTimeoutSeconds, 0};
    setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));

    std::vector<uint8_t> buf(kRecvBufferBytes);
    size_t next = 0;
    while (next < messages_.size()) {
      // One part: consecutive messages within the byte and reply budgets (at least one message).
      size_t first = next;
      size_t bytes = 0;
      while (next < messages_.size() && (next == first || (bytes + messages_[next].length <= max_bytes &&
                                                           next - first < max_msgs))) {
        bytes += messages_[next].length;
        ++next;
      }
      Part part;
      part.first = first;
      part.end = next;
      PreparePart(&part);
      if (!SendPart(fd.get(), messages_[first].offset, bytes)) return;
      if (port_id_ == 0) port_id_ = PortIdOf(fd.get());
      if (!ReceiveUntilDone(fd.get(), &part, &buf)) return;
      AppendImpliedAcks(part);
    }
  }

  void OnOK() override {
    Napi::Env env = Env();
    if (failure_.err != 0) {
      deferred_.Reject(ErrnoError(env, failure_.err, failure_.op, failure_.object).Value());
      return;
    }
    if (!errnos_ref_.IsEmpty()) {
      auto errnos = errnos_ref_.Value().As<Napi::TypedArrayOf<int32_t>>();
      for (size_t i = 0; i < outcomes_.size() && i < errnos.ElementLength(); ++i) {
        if (outcomes_[i] != kNoOutcome) errnos[i] = outcomes_[i];
      }
    }
    deferred_.Resolve(Napi::Buffer<uint8_t>::Copy(env, reply_.data(), reply_.size()));
  }

  void OnError(const Napi::Error& e) override { deferred_.Reject(e.Value()); }

 private:
  bool SendPart(int fd, size_t offset, size_t bytes) {
    sockaddr_nl kernel{};
    kernel.nl_family = AF_NETLINK;
    iovec iov{request_.data() + offset, bytes};
    msghdr msg{};
    msg.msg_name = &kernel;
    msg.msg_namelen = sizeof(kernel);
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    ssize_t sent;
    do {
      sent = sendmsg(fd, &msg, 0);
    } while (sent < 0 && errno == EINTR);
    if (sent < 0) {
      failure_ = {errno, "sendmsg", "NETLINK_XFRM (" + std::to_string(bytes) + " bytes)"};
      return false;
    }
    return true;
  }

  // Messages [first, end) of one sendmsg, by sequence number; `terminals` counts replies still awaited (the acked
  // message's NLMSG_ERROR, each dump's NLMSG_DONE or NLMSG_ERROR).
  struct Part {
    size_t first = 0;
    size_t end = 0;
    std::vector<std::pair<uint32_t, size_t>> index;  // (seq, message index), sorted by seq
    std::vector<uint8_t> answered;               // per message of the part: an NLMSG_ERROR/DONE was received
    size_t acked = 0;                            // the message that keeps NLM_F_ACK (end when none)
    size_t terminals = 0;
  };

  // Keeps NLM_F_ACK on the part's last non-dump message only (see the header comment).
  void PreparePart(Part* part) {
    part->index.reserve(part->end - part->first);
    for (size_t i = part->first; i < part->end; ++i) part->index.emplace_back(messages_[i].seq, i);
    std::sort(part->index.begin(), part->index.end());
    part->answered.assign(part->end - part->first, 0);
    size_t acked = part->end;
    for (size_t i = part->end; i-- > part->first;) {
      if (!messages_[i].dump) {
        acked = i;
        break;
      }
    }
    part->acked = acked;
    for (size_t i = part->first; i < part->end; ++i) {
      const Message& m = messages_[i];
      if (m.dump || i == acked) {
        ++part->terminals;
      } else {
        uint16_t flags;
        std::memcpy(&flags, request_.data() + m.offset + offsetof(nlmsghdr, nlmsg_flags), sizeof(flags));
        flags = static_cast<uint16_t>(flags & ~NLM_F_ACK);
        std::memcpy(request_.data() + m.offset + offsetof(nlmsghdr, nlmsg_flags), &flags, sizeof(flags));
      }
    }
  }

  // A message that asked for no ack and got no NLMSG_ERROR succeeded: add the ack the kernel sends for success
  // under NETLINK_CAP_ACK (errno 0 and the request's header, flagged NLM_F_CAPPED).
  void AppendImpliedAcks(const Part& part) {
    for (size_t i = part.first; i < part.end; ++i) {
      if (part.answered[i - part.first] || messages_[i].dump) continue;
      if (!outcomes_.empty()) {
        outcomes_[i] = 0;  // the caller reads outcomes: no ack to synthesize
        continue;
      }
      nlmsghdr request;
      std::memcpy(&request, request_.data() + messages_[i].offset, sizeof(request));
      request.nlmsg_flags = static_cast<uint16_t>(request.nlmsg_flags | NLM_F_ACK);  // as the caller wrote it
      nlmsghdr ack{};
      ack.nlmsg_len = NLMSG_LENGTH(sizeof(nlmsgerr));
      ack.nlmsg_type = NLMSG_ERROR;
      ack.nlmsg_flags = NLM_F_CAPPED;
      ack.nlmsg_seq = request.nlmsg_seq;
      ack.nlmsg_pid = port_id_;
      nlmsgerr body{};
      body.error = 0;
      body.msg = request;
      const auto* a = reinterpret_cast<const uint8_t*>(&ack);
      const auto* b = reinterpret_cast<const uint8_t*>(&body);
      reply_.insert(reply_.end(), a, a + sizeof(ack));
      reply_.insert(reply_.end(), b, b + sizeof(body));
    }
  }

  bool ReceiveUntilDone(int fd, Part* part, std::vector<uint8_t>* buf) {
    while (part->terminals > 0) {
      bool from_kernel = false;
      ssize_t got = RecvNetlinkDatagram(fd, buf->data(), buf->size(), &from_kernel);
      if (got < 0) {
        if (got == -EAGAIN) {
          failure_ = {ETIMEDOUT, "recvmsg",
                      "NETLINK_XFRM (" + std::to_string(part->terminals) + " replies missing)"};
        } else if (got == -ENOBUFS) {
          failure_ = {ENOBUFS, "recvmsg", "NETLINK_XFRM (replies lost: receive buffer overrun)"};
        } else if (got == -EMSGSIZE) {
          failure_ = {EMSGSIZE, "recvmsg", "NETLINK_XFRM (reply datagram truncated)"};
        } else {
          failure_ = {static_cast<int>(-got), "recvmsg", "NETLINK_XFRM"};
        }
        return false;
      }
      if (!from_kernel) continue;  // only the kernel answers us
      size_t off = 0;
      size_t len = static_cast<size_t>(got);
      while (off + sizeof(nlmsghdr) <= len) {
        nlmsghdr hdr;
        std::memcpy(&hdr, buf->data() + off, sizeof(hdr));
        if (hdr.nlmsg_len < sizeof(nlmsghdr) || off + hdr.nlmsg_len > len) break;
        auto it = std::lower_bound(part->index.begin(), part->index.end(), std::make_pair(hdr.nlmsg_seq, size_t{0}));
        if (it != part->index.end() && it->first == hdr.nlmsg_seq) {
          reply_.insert(reply_.end(), buf->data() + off, buf->data() + off + hdr.nlmsg_len);
          size_t pad = NLMSG_ALIGN(hdr.nlmsg_len) - hdr.nlmsg_len;
          reply_.insert(reply_.end(), pad, 0);
          const Message& m = messages_[it->second];
          uint8_t& answered = part->answered[it->second - part->first];
          bool terminal = hdr.nlmsg_type == NLMSG_ERROR || (m.dump && hdr.nlmsg_type == NLMSG_DONE);
          if (terminal && !answered) {
            answered = 1;
            if (!outcomes_.empty() && !m.dump && hdr.nlmsg_len >= NLMSG_LENGTH(sizeof(int32_t))) {
              int32_t error;
              std::memcpy(&error, buf->data() + off + NLMSG_HDRLEN, sizeof(error));
              outcomes_[it->second] = error <= 0 ? -error : error;
            }
            // An error for a message that asked for no ack is not awaited: it arrives before the awaited ack.
            if (m.dump || it->second == part->acked) --part->terminals;
          }
        }
        off += NLMSG_ALIGN(hdr.nlmsg_len);
      }
    }
    return true;
  }

  Napi::Promise::Deferred deferred_;
  std::string netns_;
  std::vector<uint8_t> request_;
  std::vector<Message> messages_;
  std::vector<uint8_t> reply_;
  uint32_t port_id_ = 0;  // our socket's netlink port id (the kernel addresses its replies to it)
  Failure failure_;
  static constexpr int32_t kNoOutcome = -1;
  Napi::ObjectReference errnos_ref_;  // the caller's Int32Array, when given
  std::vector<int32_t> outcomes_;     // per message, filled on the worker thread, copied out in OnOK
};

// Splits the request into messages and checks the rules that guarantee one terminal reply per message.
bool ParseRequest(const uint8_t* data, size_t size, std::vector<Message>* out, std::string* why) {
  size_t off = 0;
  while (off < size) {
    if (size - off < sizeof(nlmsghdr)) {
      *why = "trailing " + std::to_string(size - off) + " bytes after the last netlink message";
      return false;
    }
    nlmsghdr hdr;
    std::memcpy(&hdr, data + off, sizeof(hdr));
    if (hdr.nlmsg_len < sizeof(nlmsghdr) || hdr.nlmsg_len > size - off) {
      *why = "netlink message at offset " + std::to_string(off) + " has bad length " + std::to_string(hdr.nlmsg_len);
      return false;
    }
    bool dump = (hdr.nlmsg_flags & NLM_F_DUMP) == NLM_F_DUMP;
    if (!dump && !(hdr.nlmsg_flags & NLM_F_ACK)) {
      *why = "netlink message seq " + std::to_string(hdr.nlmsg_seq) + " lacks NLM_F_ACK";
      return false;
    }
    size_t aligned = std::min<size_t>(NLMSG_ALIGN(hdr.nlmsg_len), size - off);
    out->push_back({off, aligned, hdr.nlmsg_seq, dump});
    off += aligned;
  }
  if (out->empty()) {
    *why = "request holds no netlink message";
    return false;
  }
  std::vector<uint32_t> seqs;
  seqs.reserve(out->size());
  for (const Message& m : *out) seqs.push_back(m.seq);
  std::sort(seqs.begin(), seqs.end());
  auto twice = std::adjacent_find(seqs.begin(), seqs.end());
  if (twice != seqs.end()) {
    *why = "netlink sequence number " + std::to_string(*twice) + " is used twice";
    return false;
  }
  return true;
}

Napi::Value XfrmTransact(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  bool withErrnos = info.Length() == 3 && !info[2].IsUndefined();
  if ((info.Length() != 2 && info.Length() != 3) || !info[0].IsString() || !info[1].IsBuffer() ||
      (withErrnos && (!info[2].IsTypedArray() ||
                      info[2].As<Napi::TypedArray>().TypedArrayType() != napi_int32_array))) {
    throw Napi::TypeError::New(env, "xfrmTransact(netnsPath: string, request: Buffer, errnos?: Int32Array) expected");
  }
  std::string netns = info[0].As<Napi::String>().Utf8Value();
  auto request = info[1].As<Napi::Buffer<uint8_t>>();
  std::vector<Message> messages;
  std::string why;
  if (!ParseRequest(request.Data(), request.Length(), &messages, &why)) {
    throw Napi::TypeError::New(env, "xfrmTransact: " + why);
  }
  if (withErrnos && info[2].As<Napi::TypedArray>().ElementLength() < messages.size()) {
    throw Napi::TypeError::New(env, "xfrmTransact: errnos has fewer entries than the request has messages");
  }
  std::vector<uint8_t> copy(request.Data(), request.Data() + request.Length());
  auto* worker = new XfrmTransactWorker(env, std::move(netns), std::move(copy), std::move(messages),
                                        withErrnos ? info[2] : env.Undefined());
  Napi::Promise promise = worker->Promise();
  worker->Queue();
  return promise;
}

}  // namespace

int OpenXfrmSocketIn(const std::string& netns, int* err, std::string* op, std::string* object) {
  Failure f;
  int fd = OpenSocketIn(netns, &f);
  if (fd < 0) {
    *err = f.err;
    *op = f.op;
    *object = f.object;
  }
  return fd;
}

void InitXfrm(Napi::Env env, Napi::Object exports) {
  exports.Set("xfrmTransact", Napi::Function::New(env, XfrmTransact, "xfrmTransact"));
}

}  // namespace kmesh
