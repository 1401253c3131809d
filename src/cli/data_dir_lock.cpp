#include "cli/data_dir_lock.h"

#include <sys/file.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <stdexcept>

namespace cutor {
namespace {

std::runtime_error errno_error(const std::string& what) {
  return std::runtime_error(what + ": " + std::strerror(errno));
}

// The pid the holder wrote, or "" when it cannot be read.
std::string holder_pid(int fd) {
  char buf[32] = {};
  ssize_t n = ::pread(fd, buf, sizeof buf - 1, 0);
  if (n <= 0) return "";
  std::string pid(buf, static_cast<size_t>(n));
  while (!pid.empty() && (pid.back() == '\n' || pid.back() == ' ')) pid.pop_back();
  return pid;
}

}  // namespace

DataDirLock DataDirLock::acquire(const std::string& data_dir, const std::string& who) {
  std::filesystem::create_directories(data_dir);
  const std::string path = data_dir + "/cutor.lock";
  sandbox::UniqueFd fd(::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644));
  if (!fd) throw errno_error("open " + path);
  while (::flock(fd.get(), LOCK_EX | LOCK_NB) != 0) {
    if (errno == EINTR) continue;
    if (errno != EWOULDBLOCK) throw errno_error("flock " + path);
    std::string pid = holder_pid(fd.get());
    throw std::runtime_error(
        who + ": the data directory " + data_dir + " is in use by another cutor process" +
        (pid.empty() ? "" : " (pid " + pid + ")") + " holding " + path +
        "; stop it first, give this one another --data, or use the running server's HTTP API");
  }
  std::string pid = std::to_string(::getpid()) + "\n";
  if (::ftruncate(fd.get(), 0) != 0 || ::pwrite(fd.get(), pid.data(), pid.size(), 0) < 0)
    throw errno_error("write " + path);
  return DataDirLock(std::move(fd));
}

}  // namespace cutor
