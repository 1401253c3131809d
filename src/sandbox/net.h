// Internal to src/sandbox: networking inside the box's network namespace.
#pragma once

#include <cstdint>
#include <memory>

#include "sandbox/fd.h"

namespace cutor::sandbox {

// Brings the namespace's loopback interface up, so 127.0.0.1 and ::1 work inside the box.
// Nothing else exists in a fresh network namespace, so there is no route out.
// Throws std::system_error naming the ioctl on failure.
void bring_up_loopback();

// A network namespace with lo up, lent to one box at a time. Making one costs ~0.25 ms of
// cpu (device and sysctl registration) and destroying it as much again in kernel workers
// plus an expedited RCU grace period; at hundreds of stages a second that is a fifth of
// the host's cpu. So a namespace comes back after its box (return_net_namespace) and is
// lent again only if it is exactly as it was new: its /proc/net views (lo's counters, the
// SNMP, SNMP6 and netstat counters, the count of its sockets of every family and of TCP's
// TIME_WAIT ones, IPv6 flow labels, multicast memberships) read byte for byte what they
// read when it was made. A box that
// sent a single packet on lo, left a socket behind (in flight in a unix socket, lingering,
// in TIME_WAIT) or bumped any counter (a refused connect counts) makes its namespace be
// destroyed instead. What a box can change in a network namespace without privilege shows
// in those views; everything else needs CAP_NET_ADMIN or CAP_NET_RAW, which no box has.
class NetNamespace;
struct NetNamespaceDeleter {
  void operator()(NetNamespace* ns) const;  // destroys it (closes its fds)
};
using LentNetNamespace = std::unique_ptr<NetNamespace, NetNamespaceDeleter>;

// The namespace's fd, for setns(CLONE_NEWNET); owned by `ns`.
int net_namespace_fd(const NetNamespace& ns);

// A prepared namespace, or null when none is ready or this host cannot make them (the box
// then unshares its own). Never blocks; thread-safe. Starts the background thread that
// prepares them on first use.
LentNetNamespace take_prepared_net_namespace();

// The box that `ns` was lent to is gone: its init was reaped, so every process that could
// use the namespace has exited. The background thread checks it and lends it again or
// destroys it. Never blocks; thread-safe. Null is fine (nothing to return).
void return_net_namespace(LentNetNamespace ns);

// Starts the background thread (once per process) that keeps a couple ready.
void start_preparing_net_namespaces();

// Asks the background thread to make up for what was taken. Called when a stage has ended
// rather than when it starts, so that making a namespace does not compete with the stage's
// own setup on a busy host.
void refill_prepared_net_namespaces();

// What the pool has done since the process started: namespaces made, lent again after a
// clean check, destroyed after a check found a trace of their last box; and how many came
// back and wait for their check now.
struct NetNamespaceCounts {
  int64_t made = 0;
  int64_t reused = 0;
  int64_t dirty = 0;
  int64_t unchecked = 0;
};
NetNamespaceCounts net_namespace_counts();

}  // namespace cutor::sandbox
