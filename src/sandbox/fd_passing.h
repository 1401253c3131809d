// Internal to src/sandbox: whole messages with file descriptors attached, over a stream
// socket (the box spawner's requests, a prepared box's command).
//
// All return 0 on success, -1 at a clean EOF before the first byte, or an errno value
// (EPROTO when the peer stopped mid-message or the fds did not fit). Sends use MSG_NOSIGNAL:
// a peer that is gone is EPIPE, never SIGPIPE. EINTR is retried.
#pragma once

#include <cstddef>

namespace cutor::sandbox {

// Sends `size` bytes of `data` with `fds[0..fd_count)` attached to the first byte.
int send_with_fds(int socket, const void* data, size_t size, const int* fds, size_t fd_count);

// Receives exactly `size` bytes into `data` and the fds attached to them (close-on-exec)
// into `fds[0..*fd_count)`, at most `max_fds`; the other slots are -1. On any result but 0
// no fd is left open.
int receive_with_fds(int socket, void* data, size_t size, int* fds, size_t max_fds,
                     size_t* fd_count);

// Exactly `size` bytes, without fds.
int send_all(int socket, const void* data, size_t size);
int receive_all(int socket, void* data, size_t size);

}  // namespace cutor::sandbox
