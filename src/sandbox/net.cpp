#include "sandbox/net.h"

#include <net/if.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>
#include <system_error>

#include "sandbox/fd.h"

namespace cutor::sandbox {

void bring_up_loopback() {
  // Interface flags are set through any socket of the namespace; a datagram socket is the
  // cheapest. No netlink needed (and the box's seccomp filter refuses netlink later).
  UniqueFd sock(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (!sock) throw std::system_error(errno, std::generic_category(), "socket(AF_INET) for lo");
  struct ifreq request;
  std::memset(&request, 0, sizeof(request));
  std::strncpy(request.ifr_name, "lo", IFNAMSIZ - 1);
  if (::ioctl(sock.get(), SIOCGIFFLAGS, &request) != 0)
    throw std::system_error(errno, std::generic_category(), "ioctl SIOCGIFFLAGS lo");
  request.ifr_flags |= IFF_UP | IFF_RUNNING;
  if (::ioctl(sock.get(), SIOCSIFFLAGS, &request) != 0)
    throw std::system_error(errno, std::generic_category(), "ioctl SIOCSIFFLAGS lo up");
}

}  // namespace cutor::sandbox
