// The one message a prepared box waits for: what to run, as whom, with which stdio and
// workspace. Written by the supervisor (send_box_command), read by box init
// (receive_box_command). A header with the fds attached (SCM_RIGHTS), then argv and env as
// NUL-terminated strings.
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <string>
#include <system_error>

#include "sandbox/box.h"
#include "sandbox/fd_passing.h"

namespace cutor::sandbox {
namespace {

constexpr uint32_t kMagic = 0x63627831;  // "cbx1"
constexpr int kFdCount = 4;              // stdin, stdout, stderr, workspace mount
// argv + env of a stage are a few KiB; anything near this is not from our supervisor.
constexpr uint64_t kMaxPayload = 64ull << 20;

struct CommandHeader {
  uint32_t magic = kMagic;
  uint32_t argc = 0;
  uint32_t envc = 0;
  uid_t uid = 0;
  gid_t gid = 0;
  SandboxLimits limits;
  uint64_t payload_bytes = 0;
};

[[noreturn]] void throw_errno(int err, const std::string& what) {
  throw std::system_error(err, std::generic_category(), what);
}

}  // namespace

void send_box_command(int command_socket, const BoxPlan& plan, int workspace_mount) {
  const int fds[kFdCount] = {plan.stdin_fd, plan.stdout_fd, plan.stderr_fd, workspace_mount};
  for (int fd : fds)
    if (fd < 0) throw_errno(EINVAL, "box command: stdio and workspace fds are required");
  std::string payload;
  for (const std::string& arg : plan.argv) payload.append(arg.c_str(), arg.size() + 1);
  for (const std::string& var : plan.env) payload.append(var.c_str(), var.size() + 1);
  CommandHeader header;
  header.argc = static_cast<uint32_t>(plan.argv.size());
  header.envc = static_cast<uint32_t>(plan.env.size());
  header.uid = plan.uid;
  header.gid = plan.gid;
  header.limits = plan.limits;
  header.payload_bytes = payload.size();

  if (int err = send_with_fds(command_socket, &header, sizeof header, fds, kFdCount))
    throw_errno(err, "sendmsg the box command");
  if (int err = send_all(command_socket, payload.data(), payload.size()))
    throw_errno(err, "send the box command");
}

bool receive_box_command(int command_socket, BoxPlan& plan, UniqueFd& workspace_mount) {
  CommandHeader header;
  int fds[kFdCount];
  size_t fd_count = 0;
  const int err =
      receive_with_fds(command_socket, &header, sizeof header, fds, kFdCount, &fd_count);
  if (err == -1) return false;  // discarded before use
  if (err != 0) throw_errno(err, "recvmsg the box command");
  UniqueFd owned[kFdCount] = {UniqueFd(fds[0]), UniqueFd(fds[1]), UniqueFd(fds[2]),
                              UniqueFd(fds[3])};
  if (fd_count != kFdCount) throw_errno(EPROTO, "box command without its fds");
  if (header.magic != kMagic || header.payload_bytes > kMaxPayload || header.argc == 0)
    throw_errno(EPROTO, "malformed box command");

  std::string payload(header.payload_bytes, '\0');
  if (receive_all(command_socket, payload.data(), payload.size()) != 0)
    throw_errno(EPROTO, "box command without its arguments");
  if (!payload.empty() && payload.back() != '\0') throw_errno(EPROTO, "box command arguments");
  std::vector<std::string> strings;
  for (size_t at = 0; at < payload.size();) {
    size_t end = payload.find('\0', at);
    strings.emplace_back(payload, at, end - at);
    at = end + 1;
  }
  if (strings.size() != static_cast<size_t>(header.argc) + header.envc)
    throw_errno(EPROTO, "box command: argument count");
  plan.argv.assign(strings.begin(), strings.begin() + header.argc);
  plan.env.assign(strings.begin() + header.argc, strings.end());
  plan.uid = header.uid;
  plan.gid = header.gid;
  plan.limits = header.limits;
  plan.stdin_fd = owned[0].release();
  plan.stdout_fd = owned[1].release();
  plan.stderr_fd = owned[2].release();
  workspace_mount = std::move(owned[3]);
  return true;
}

}  // namespace cutor::sandbox
