#include "sandbox/fd_passing.h"

#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace cutor::sandbox {
namespace {

// SCM_RIGHTS messages here carry a handful of fds; the kernel allows 253.
constexpr size_t kMaxFds = 16;

}  // namespace

int send_all(int socket, const void* data, size_t size) {
  const char* at = static_cast<const char*>(data);
  while (size > 0) {
    ssize_t n = ::send(socket, at, size, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return errno;
    at += n;
    size -= static_cast<size_t>(n);
  }
  return 0;
}

int receive_all(int socket, void* data, size_t size) {
  char* at = static_cast<char*>(data);
  size_t done = 0;
  while (done < size) {
    ssize_t n = ::read(socket, at + done, size - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return errno;
    if (n == 0) return done == 0 ? -1 : EPROTO;
    done += static_cast<size_t>(n);
  }
  return 0;
}

int send_with_fds(int socket, const void* data, size_t size, const int* fds, size_t fd_count) {
  if (fd_count > kMaxFds || size == 0) return EINVAL;
  struct iovec iov = {const_cast<void*>(data), size};
  alignas(struct cmsghdr) char control[CMSG_SPACE(sizeof(int) * kMaxFds)] = {};
  struct msghdr message = {};
  message.msg_iov = &iov;
  message.msg_iovlen = 1;
  if (fd_count > 0) {
    message.msg_control = control;
    message.msg_controllen = CMSG_SPACE(sizeof(int) * fd_count);
    struct cmsghdr* cmsg = CMSG_FIRSTHDR(&message);
    cmsg->cmsg_level = SOL_SOCKET;
    cmsg->cmsg_type = SCM_RIGHTS;
    cmsg->cmsg_len = CMSG_LEN(sizeof(int) * fd_count);
    std::memcpy(CMSG_DATA(cmsg), fds, sizeof(int) * fd_count);
  }
  ssize_t sent;
  do sent = ::sendmsg(socket, &message, MSG_NOSIGNAL);
  while (sent < 0 && errno == EINTR);
  if (sent < 0) return errno;
  return send_all(socket, static_cast<const char*>(data) + sent, size - static_cast<size_t>(sent));
}

int receive_with_fds(int socket, void* data, size_t size, int* fds, size_t max_fds,
                     size_t* fd_count) {
  *fd_count = 0;
  std::fill(fds, fds + max_fds, -1);
  if (max_fds > kMaxFds || size == 0) return EINVAL;
  struct iovec iov = {data, size};
  alignas(struct cmsghdr) char control[CMSG_SPACE(sizeof(int) * kMaxFds)] = {};
  struct msghdr message = {};
  message.msg_iov = &iov;
  message.msg_iovlen = 1;
  message.msg_control = control;
  message.msg_controllen = CMSG_SPACE(sizeof(int) * max_fds);
  ssize_t got;
  do got = ::recvmsg(socket, &message, MSG_CMSG_CLOEXEC);
  while (got < 0 && errno == EINTR);
  if (got < 0) return errno;
  if (got == 0) return -1;
  struct cmsghdr* cmsg = CMSG_FIRSTHDR(&message);
  if (cmsg != nullptr && cmsg->cmsg_level == SOL_SOCKET && cmsg->cmsg_type == SCM_RIGHTS) {
    const size_t count =
        std::min((cmsg->cmsg_len - CMSG_LEN(0)) / sizeof(int), static_cast<size_t>(max_fds));
    std::memcpy(fds, CMSG_DATA(cmsg), count * sizeof(int));
    *fd_count = count;
  }
  int result = (message.msg_flags & MSG_CTRUNC) != 0 ? EPROTO : 0;
  if (result == 0) {
    result = receive_all(socket, static_cast<char*>(data) + got, size - static_cast<size_t>(got));
    if (result == -1) result = got == static_cast<ssize_t>(size) ? 0 : EPROTO;
  }
  if (result != 0) {
    for (size_t i = 0; i < *fd_count; ++i) ::close(fds[i]);
    std::fill(fds, fds + max_fds, -1);
    *fd_count = 0;
  }
  return result;
}

}  // namespace cutor::sandbox
