/* Sockets that reach past the network namespace, or need privileges: packet and netlink
   sockets, raw IP. */
#include <linux/netlink.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "sys_report.h"
int main(void) {
  report("socket AF_PACKET", socket(AF_PACKET, SOCK_RAW, 0));
  report("socket AF_NETLINK route", socket(AF_NETLINK, SOCK_RAW, NETLINK_ROUTE));
  report("socket AF_NETLINK audit", socket(AF_NETLINK, SOCK_RAW, NETLINK_AUDIT));
  report("socket raw icmp", socket(AF_INET, SOCK_RAW, IPPROTO_ICMP));
  report("socket AF_VSOCK", socket(40, SOCK_STREAM, 0));
  return 0;
}
