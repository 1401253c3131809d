#include "sandbox/doctor.h"

#include <sched.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <system_error>

#include "sandbox/cgroup.h"
#include "sandbox/seccomp.h"

namespace cutor::sandbox {
namespace {

std::string read_first_line(const std::string& path) {
  std::ifstream in(path);
  std::string line;
  if (!in || !std::getline(in, line)) return "";
  return line;
}

void report(std::ostream& out, bool ok, const std::string& what, const std::string& why) {
  out << (ok ? "ok      " : "missing ") << what << ": " << why << "\n";
}

// Runs `probe` in a forked child; "" when it exited 0, else what failed. The child exits
// with the errno of the failing call.
template <typename Probe>
std::string in_child(Probe probe) {
  pid_t pid = ::fork();
  if (pid < 0) return std::string("fork: ") + std::strerror(errno);
  if (pid == 0) ::_exit(probe());
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return "";
  if (WIFEXITED(status)) return std::strerror(WEXITSTATUS(status));
  return "killed by signal " + std::to_string(WTERMSIG(status));
}

bool on_path(const std::string& name, std::string& found) {
  const char* path = std::getenv("PATH");
  std::istringstream dirs(path ? path : "/usr/local/bin:/usr/bin:/bin");
  std::string dir;
  while (std::getline(dirs, dir, ':')) {
    std::string candidate = (dir.empty() ? "." : dir) + "/" + name;
    if (::access(candidate.c_str(), X_OK) == 0) {
      found = candidate;
      return true;
    }
  }
  return false;
}

}  // namespace

int run_doctor(std::ostream& out) {
  bool can_run = true;

  bool root = ::geteuid() == 0;
  report(out, root, "root",
         root ? "running as root (needed for namespaces, mounts, uid switch)"
              : "not root: the isolated sandbox needs root");
  can_run = can_run && root;

  // Namespaces the box unshares, tried for real in a throwaway child.
  std::string ns_error = in_child([] {
    if (::unshare(CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS | CLONE_NEWCGROUP |
                  CLONE_NEWPID) != 0)
      return errno;
    return 0;
  });
  report(out, ns_error.empty(), "namespaces (mount, pid, net, ipc, uts, cgroup)",
         ns_error.empty() ? "unshare works" : "unshare failed: " + ns_error);
  can_run = can_run && ns_error.empty();

  // The mounts the box makes: private propagation, a tmpfs, a read-only bind, a new proc.
  std::string mount_error = in_child([] {
    if (::unshare(CLONE_NEWNS | CLONE_NEWPID) != 0) return errno;
    pid_t init = ::fork();
    if (init < 0) return errno;
    if (init == 0) {
      if (::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) ::_exit(errno);
      char dir[] = "/tmp/cutor-doctor-XXXXXX";
      if (::mkdtemp(dir) == nullptr) ::_exit(errno);
      int err = 0;
      std::string sub = std::string(dir) + "/usr";
      if (::mount("doctor", dir, "tmpfs", 0, "size=64k") != 0 || ::mkdir(sub.c_str(), 0755) != 0 ||
          ::mount("/usr", sub.c_str(), nullptr, MS_BIND, nullptr) != 0 ||
          ::mount(nullptr, sub.c_str(), nullptr, MS_REMOUNT | MS_BIND | MS_RDONLY, nullptr) != 0 ||
          ::mkdir((std::string(dir) + "/proc").c_str(), 0755) != 0 ||
          ::mount("proc", (std::string(dir) + "/proc").c_str(), "proc", 0, nullptr) != 0)
        err = errno;
      ::umount2(dir, MNT_DETACH);
      ::rmdir(dir);
      ::_exit(err);
    }
    int status = 0;
    while (::waitpid(init, &status, 0) < 0 && errno == EINTR) {
    }
    return WIFEXITED(status) ? WEXITSTATUS(status) : EIO;
  });
  report(out, mount_error.empty(), "mounts (tmpfs, read-only bind, proc)",
         mount_error.empty() ? "work in a private mount namespace" : "failed: " + mount_error);
  can_run = can_run && mount_error.empty();

  std::string cgroups = describe_cgroup_support();
  bool cgroups_ok = cgroups.rfind("none", 0) != 0;
  report(out, cgroups_ok, "cgroups", cgroups);

  std::string seccomp_status = "unknown";
  {
    std::ifstream status("/proc/self/status");
    std::string line;
    while (std::getline(status, line))
      if (line.rfind("Seccomp:", 0) == 0) seccomp_status = line;
  }
  bool seccomp_ok = ::prctl(PR_GET_SECCOMP, 0, 0, 0, 0) >= 0;
  std::string seccomp_why = seccomp_ok ? "PR_GET_SECCOMP works (" + seccomp_status + ")"
                                       : std::string("PR_GET_SECCOMP: ") + std::strerror(errno);
  if (seccomp_ok) {
    // The box's own filter, loaded for real in a throwaway child.
    std::string load_error = in_child([] {
      try {
        install_seccomp_filter();
      } catch (const std::system_error& e) {
        return e.code().value() != 0 ? e.code().value() : EIO;
      }
      return 0;
    });
    seccomp_ok = load_error.empty();
    seccomp_why += seccomp_ok ? ", the box filter loads" : ", the box filter fails: " + load_error;
  }
  report(out, seccomp_ok, "seccomp", seccomp_why);
  can_run = can_run && seccomp_ok;

  std::ifstream filesystems("/proc/filesystems");
  std::string fs_text((std::istreambuf_iterator<char>(filesystems)),
                      std::istreambuf_iterator<char>());
  bool tmpfs = fs_text.find("\ttmpfs\n") != std::string::npos;
  bool overlay = fs_text.find("\toverlay\n") != std::string::npos;
  report(out, tmpfs, "tmpfs", tmpfs ? "listed in /proc/filesystems" : "not in /proc/filesystems");
  report(out, overlay, "overlayfs",
         overlay ? "listed in /proc/filesystems (not required)"
                 : "not in /proc/filesystems (not required)");
  can_run = can_run && tmpfs;

  std::string userns_clone = read_first_line("/proc/sys/kernel/unprivileged_userns_clone");
  std::string max_userns = read_first_line("/proc/sys/user/max_user_namespaces");
  bool userns = max_userns != "0" && userns_clone != "0";
  report(out, userns, "user namespaces",
         "max_user_namespaces=" + (max_userns.empty() ? "?" : max_userns) +
             ", unprivileged_userns_clone=" + (userns_clone.empty() ? "n/a" : userns_clone) +
             " (not used by cutor; the box's seccomp filter refuses them to the program)");

  // Nix is reported by the cli (envcache's readiness check): the box does not use it.

  std::string bwrap;
  bool has_bwrap = on_path("bwrap", bwrap);
  report(out, has_bwrap, "bubblewrap",
         has_bwrap ? bwrap + " (benchmarks only)" : "not found (benchmarks only)");

  out << (can_run ? "sandbox: can run isolated\n" : "sandbox: CANNOT run isolated on this host\n");
  return can_run ? 0 : 1;
}

}  // namespace cutor::sandbox
