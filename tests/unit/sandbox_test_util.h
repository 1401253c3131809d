// Helpers shared by the sandbox tests.
#pragma once

#include <fcntl.h>
#include <unistd.h>

#include <string>

namespace cutor::testing_util {

// The whole file, or "" when it cannot be opened. read(2) rather than iostreams: /proc
// files of exiting processes fail mid-read.
inline std::string read_file(const std::string& path) {
  std::string text;
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return text;
  char buf[4096];
  ssize_t n;
  while ((n = ::read(fd, buf, sizeof buf)) > 0) text.append(buf, static_cast<size_t>(n));
  ::close(fd);
  return text;
}

}  // namespace cutor::testing_util
