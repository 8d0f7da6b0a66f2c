// One datagram from a netlink socket, as both NETLINK_XFRM readers of the addon receive it (xfrm.cc, xfrm_dump.cc).
#pragma once

#include <linux/netlink.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>

namespace kmesh {

// Receives one datagram into buf[0, size), retrying on EINTR. Returns its length, or -errno (EAGAIN when the
// socket's receive timeout passed; EMSGSIZE when the datagram did not fit and was truncated). *from_kernel says
// whether the kernel sent it (port id 0): replies to our requests come from nowhere else.
inline ssize_t RecvNetlinkDatagram(int fd, uint8_t* buf, size_t size, bool* from_kernel) {
  for (;;) {
    sockaddr_nl from{};
    iovec iov{buf, size};
    msghdr msg{};
    msg.msg_name = &from;
    msg.msg_namelen = sizeof(from);
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    ssize_t got = recvmsg(fd, &msg, 0);
    if (got < 0) {
      if (errno == EINTR) continue;
      return errno == EWOULDBLOCK ? -EAGAIN : -errno;
    }
    if (msg.msg_flags & MSG_TRUNC) return -EMSGSIZE;
    *from_kernel = from.nl_pid == 0;
    return got;
  }
}

}  // namespace kmesh
