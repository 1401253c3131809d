// Stage cgroups.
//
// Modes, decided once per process by discover_layout():
//   v2      the server's v2 cgroup offers memory and pids: one cgroup per stage below it.
//           The server must not sit in the cgroup whose subtree_control it sets ("no internal
//           processes"), so it first moves itself into a `cutor-server` leaf.
//   hybrid  v1 hierarchies for memory, pids and cpuacct, each below the server's own path
//           in that hierarchy. A controller whose own path is the hierarchy's root is NOT
//           used: creating cgroups at a root is forbidden here. Fallbacks, per controller:
//             memory   none for the limit (the supervisor still has wall/cpu limits);
//                      peak -1 (BoxStatus.max_rss_bytes is the supervisor's fallback).
//             pids     RLIMIT_NPROC in the box (per uid; each box has its own uid).
//             cpuacct  cpu time = utime+stime+cutime+cstime from /proc/<pid>/stat of every
//                      process in the stage cgroup (init's cutime holds what it reaped),
//                      and BoxStatus.cpu_time_us when the box ends; sandbox.cpp adds the
//                      taskstats exit records of the box uid (taskstats.h), which also
//                      count children nobody reaped (cpu_time_is_exact() is false).
//           The first usable controller tracks membership (kill_all, cpu fallback).
//   none    no usable controller: create_stage_cgroup throws.
// The layout of a cgroup path: <mount>/<own path>/<parent or "cutor">/<stage name>. A parent
// starting with '/' is taken relative to each hierarchy's root instead of the own path.
#include "sandbox/cgroup.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <mutex>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
#include <vector>

namespace cutor::sandbox {
namespace {

[[noreturn]] void throw_errno(int err, const std::string& what) {
  throw std::system_error(err, std::generic_category(), what);
}

std::optional<std::string> read_text(const std::string& path) {
  std::ifstream in(path);
  if (!in) return std::nullopt;
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

void write_text(const std::string& path, const std::string& value) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) throw_errno(errno, "open " + path);
  ssize_t n = ::write(fd, value.data(), value.size());
  int err = errno;
  ::close(fd);
  if (n != static_cast<ssize_t>(value.size()))
    throw_errno(n < 0 ? err : EIO, "write " + value + " to " + path);
}

bool exists(const std::string& path) {
  return ::access(path.c_str(), F_OK) == 0;
}

int64_t read_int(const std::string& path) {
  auto text = read_text(path);
  if (!text) return -1;
  try {
    return std::stoll(*text);
  } catch (const std::exception&) {
    return -1;
  }
}

// "key value" lines (memory.events, cpu.stat, memory.oom_control).
int64_t read_keyed(const std::string& path, const std::string& key) {
  auto text = read_text(path);
  if (!text) return -1;
  std::istringstream lines(*text);
  std::string k;
  int64_t v;
  while (lines >> k >> v)
    if (k == key) return v;
  return -1;
}

std::vector<pid_t> read_pids(const std::string& procs_file) {
  std::vector<pid_t> pids;
  auto text = read_text(procs_file);
  if (!text) return pids;
  std::istringstream in(*text);
  pid_t pid;
  while (in >> pid) pids.push_back(pid);
  return pids;
}

// utime+stime+cutime+cstime of one process from /proc/<pid>/stat, in microseconds.
int64_t process_cpu_us(pid_t pid) {
  auto text = read_text("/proc/" + std::to_string(pid) + "/stat");
  if (!text) return 0;
  auto close_paren = text->rfind(')');  // comm may contain spaces and parentheses
  if (close_paren == std::string::npos) return 0;
  std::istringstream fields(text->substr(close_paren + 2));
  std::string field;
  int64_t ticks = 0;
  // After comm: state(3) ... utime(14) stime(15) cutime(16) cstime(17).
  for (int index = 3; index <= 17 && fields >> field; ++index)
    if (index >= 14) ticks += std::strtoll(field.c_str(), nullptr, 10);
  static const long ticks_per_second = ::sysconf(_SC_CLK_TCK);
  return ticks * 1000000 / (ticks_per_second > 0 ? ticks_per_second : 100);
}

void make_dir(const std::string& path) {
  if (::mkdir(path.c_str(), 0755) != 0 && errno != EEXIST) throw_errno(errno, "mkdir " + path);
}

// rmdir, retried briefly: a cgroup whose last task just exited can still be busy.
bool remove_dir(const std::string& path) {
  for (int attempt = 0; attempt < 200; ++attempt) {
    if (::rmdir(path.c_str()) == 0 || errno == ENOENT) return true;
    if (errno != EBUSY) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return false;
}

// SIGKILLs everything listed in `procs_file` until it stays empty (bounded: ~2 s).
void kill_listed(const std::string& procs_file) {
  for (int round = 0; round < 400; ++round) {
    auto pids = read_pids(procs_file);
    if (pids.empty()) return;
    for (pid_t pid : pids) ::kill(pid, SIGKILL);
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

// What the host offers, found once.
struct Layout {
  enum class Mode { kNone, kV2, kHybrid } mode = Mode::kNone;
  std::string v2_own;  // <mount><own path> of the v2 hierarchy (mode v2)
  // hybrid: <mount><own path> per controller, empty when not usable
  std::string memory_own, pids_own, cpuacct_own;
  std::string description;
};

// Mount point of each hierarchy from /proc/self/mountinfo-like /proc/self/mounts lines.
struct Mounts {
  std::string v2;
  std::string memory, pids, cpuacct;
};

Mounts find_mounts() {
  Mounts mounts;
  std::ifstream in("/proc/self/mounts");
  std::string device, dir, type, options, rest;
  while (in >> device >> dir >> type >> options) {
    std::getline(in, rest);
    if (type == "cgroup2" && mounts.v2.empty()) mounts.v2 = dir;
    if (type != "cgroup") continue;
    std::istringstream opts(options);
    std::string opt;
    while (std::getline(opts, opt, ',')) {
      if (opt == "memory") mounts.memory = dir;
      if (opt == "pids") mounts.pids = dir;
      if (opt == "cpuacct") mounts.cpuacct = dir;
    }
  }
  return mounts;
}

Layout discover_layout() {
  Layout layout;
  Mounts mounts = find_mounts();
  std::string own_v2, own_memory, own_pids, own_cpuacct;
  std::ifstream in("/proc/self/cgroup");
  std::string line;
  while (std::getline(in, line)) {
    auto first = line.find(':');
    auto second = line.find(':', first + 1);
    if (first == std::string::npos || second == std::string::npos) continue;
    std::string controllers = line.substr(first + 1, second - first - 1);
    std::string path = line.substr(second + 1);
    if (line.substr(0, first) == "0" && controllers.empty()) own_v2 = path;
    std::istringstream list(controllers);
    std::string c;
    while (std::getline(list, c, ',')) {
      if (c == "memory") own_memory = path;
      if (c == "pids") own_pids = path;
      if (c == "cpuacct") own_cpuacct = path;
    }
  }
  auto join = [](const std::string& mount, const std::string& own) {
    return own == "/" ? mount : mount + own;
  };

  // v2 with the controllers we need, below a non-root cgroup.
  if (!mounts.v2.empty() && !own_v2.empty() && own_v2 != "/") {
    auto controllers = read_text(join(mounts.v2, own_v2) + "/cgroup.controllers").value_or("");
    if (controllers.find("memory") != std::string::npos &&
        controllers.find("pids") != std::string::npos) {
      layout.mode = Layout::Mode::kV2;
      layout.v2_own = join(mounts.v2, own_v2);
      layout.description = "v2 (" + layout.v2_own + ": memory, pids, cpu.stat, cgroup.kill)";
      return layout;
    }
  }

  std::string usable, unusable;
  auto consider = [&](const char* name, const std::string& mount, const std::string& own,
                      std::string& out, const char* fallback) {
    if (mount.empty() || own.empty()) {
      unusable += std::string("; ") + name + ": not mounted (" + fallback + ")";
    } else if (own == "/") {
      unusable += std::string("; ") + name + ": own cgroup is the hierarchy root, not used (" +
                  fallback + ")";
    } else {
      out = join(mount, own);
      usable += (usable.empty() ? "" : ",") + std::string(name);
    }
  };
  consider("memory", mounts.memory, own_memory, layout.memory_own, "no memory limit");
  consider("pids", mounts.pids, own_pids, layout.pids_own, "RLIMIT_NPROC per box uid");
  consider("cpuacct", mounts.cpuacct, own_cpuacct, layout.cpuacct_own,
           "cpu time from /proc of the stage's processes");
  if (usable.empty()) {
    layout.description = "none (no usable cgroup controller" + unusable + ")";
    return layout;
  }
  layout.mode = Layout::Mode::kHybrid;
  layout.description = "hybrid (v1 " + usable + unusable + ")";
  return layout;
}

const Layout& layout() {
  static const Layout cached = discover_layout();
  return cached;
}

// `base` is <mount><own path>; the parent directory of stage cgroups below it.
std::string parent_dir(const std::string& base, const std::string& parent) {
  return base + "/" + (parent.empty() ? std::string("cutor") : parent);
}

void check_name(const std::string& name, const std::string& parent) {
  auto bad = [](const std::string& part) {
    return part == "." || part == ".." || part.find('/') != std::string::npos ||
           part.find('\n') != std::string::npos;
  };
  if (name.empty() || bad(name) || bad(parent))
    throw_errno(EINVAL, "cgroup name '" + name + "' under '" + parent + "'");
}

// Creates parent and leaf; a concurrent destructor may remove an empty parent between the
// two mkdirs, so retry on ENOENT.
std::string create_leaf(const std::string& parent, const std::string& name,
                        void (*prepare_parent)(const std::string&)) {
  for (int attempt = 0;; ++attempt) {
    make_dir(parent);
    if (prepare_parent) prepare_parent(parent);
    std::string leaf = parent + "/" + name;
    if (::mkdir(leaf.c_str(), 0755) == 0) return leaf;
    if (errno != ENOENT || attempt >= 5) throw_errno(errno, "mkdir " + leaf);
  }
}

class V1StageCgroup final : public StageCgroup {
 public:
  V1StageCgroup(const std::string& parent, const std::string& name, const SandboxLimits& limits) {
    const Layout& l = layout();
    try {
      if (!l.memory_own.empty()) {
        memory_parent_ = parent_dir(l.memory_own, parent);
        memory_ = create_leaf(memory_parent_, name, nullptr);
        if (exists(memory_ + "/memory.swappiness")) {
          try {
            write_text(memory_ + "/memory.swappiness", "0");
          } catch (const std::system_error&) {
            // Refused when the hierarchy is shared with use_hierarchy rules; not needed.
          }
        }
      }
      if (!l.pids_own.empty()) {
        pids_parent_ = parent_dir(l.pids_own, parent);
        pids_ = create_leaf(pids_parent_, name, nullptr);
      }
      if (!l.cpuacct_own.empty()) {
        cpuacct_parent_ = parent_dir(l.cpuacct_own, parent);
        cpuacct_ = create_leaf(cpuacct_parent_, name, nullptr);
      }
      members_ = !memory_.empty() ? memory_ : !pids_.empty() ? pids_ : cpuacct_;
      set_limits(limits);
    } catch (...) {
      remove_all();
      throw;
    }
  }

  void set_limits(const SandboxLimits& limits) override {
    if (!memory_.empty()) {
      // memsw must stay >= the memory limit at every step: lift it first, set the memory
      // limit, then bring memsw to it (swap is counted: the limit is memory+swap).
      const std::string bytes =
          limits.memory_bytes > 0 ? std::to_string(limits.memory_bytes) : "-1";
      const bool memsw = exists(memory_ + "/memory.memsw.limit_in_bytes");
      if (memsw) write_text(memory_ + "/memory.memsw.limit_in_bytes", "-1");
      write_text(memory_ + "/memory.limit_in_bytes", bytes);
      if (memsw) write_text(memory_ + "/memory.memsw.limit_in_bytes", bytes);
    }
    if (!pids_.empty())
      write_text(pids_ + "/pids.max",
                 limits.processes > 0 ? std::to_string(limits.processes) : std::string("max"));
  }

  ~V1StageCgroup() override {
    kill_all();
    remove_all();
  }

  void add_process(pid_t pid) override {
    for (const std::string* dir : {&memory_, &pids_, &cpuacct_})
      if (!dir->empty()) write_text(*dir + "/cgroup.procs", std::to_string(pid));
  }

  int64_t cpu_time_us() override {
    if (!cpuacct_.empty()) {
      int64_t ns = read_int(cpuacct_ + "/cpuacct.usage");
      return ns < 0 ? -1 : ns / 1000;
    }
    // Every process's own time plus what it reaped (cutime/cstime), so a finished child still
    // counts through its parent. v1 lists cgroup.procs sorted, parents (lower pids) usually
    // first: a child reaped mid-scan is then missed once (an undercount, safe for a limit)
    // rather than counted twice. Granularity is the clock tick (10 ms).
    int64_t total = 0;
    for (pid_t pid : read_pids(members_ + "/cgroup.procs")) total += process_cpu_us(pid);
    return total;
  }

  bool cpu_time_is_exact() override { return !cpuacct_.empty(); }
  std::vector<pid_t> processes() override { return read_pids(members_ + "/cgroup.procs"); }

  int64_t memory_peak_bytes() override {
    return memory_.empty() ? -1 : read_int(memory_ + "/memory.max_usage_in_bytes");
  }

  bool oom_killed() override {
    if (memory_.empty()) return false;
    int64_t kills = read_keyed(memory_ + "/memory.oom_control", "oom_kill");
    if (kills >= 0) return kills > 0;
    return read_int(memory_ + "/memory.failcnt") > 0;  // kernels before 4.13
  }

  // v1 has no cgroup.kill: SIGKILL what is listed until nothing is (the box's pid namespace
  // does the rest once its init is gone).
  void kill_all() override {
    for (const std::string* dir : {&memory_, &pids_, &cpuacct_})
      if (!dir->empty()) kill_listed(*dir + "/cgroup.procs");
  }

 private:
  void remove_all() {
    for (auto [leaf, parent] :
         {std::pair{&memory_, &memory_parent_}, std::pair{&pids_, &pids_parent_},
          std::pair{&cpuacct_, &cpuacct_parent_}}) {
      if (!leaf->empty()) remove_dir(*leaf);
      // The shared parent goes when empty; another stage may still use it (EBUSY/ENOTEMPTY).
      if (!parent->empty()) ::rmdir(parent->c_str());
    }
  }

  std::string memory_, pids_, cpuacct_;
  std::string memory_parent_, pids_parent_, cpuacct_parent_;
  std::string members_;
};

// The server moves itself into <own>/cutor-server once, so that <own> can delegate
// controllers to its children.
void enable_v2_controllers(const std::string& dir) {
  // Both "+memory +pids" at once; cpu is optional (not delegated everywhere).
  write_text(dir + "/cgroup.subtree_control", "+memory +pids");
  try {
    write_text(dir + "/cgroup.subtree_control", "+cpu");
  } catch (const std::system_error&) {
  }
}

void prepare_v2_root_once(const std::string& own) {
  static std::once_flag once;
  static std::string error;
  std::call_once(once, [&] {
    try {
      auto procs = read_pids(own + "/cgroup.procs");
      if (!procs.empty()) {
        make_dir(own + "/cutor-server");
        // Moves the whole server (every thread): it is our own process.
        write_text(own + "/cutor-server/cgroup.procs", std::to_string(::getpid()));
      }
      enable_v2_controllers(own);
    } catch (const std::system_error& e) {
      // E.g. EBUSY: another process (not ours to move) shares the server's cgroup.
      error = e.what();
    }
  });
  if (!error.empty()) throw_errno(EBUSY, "prepare cgroup v2 delegation: " + error);
}

class V2StageCgroup final : public StageCgroup {
 public:
  V2StageCgroup(const std::string& parent, const std::string& name, const SandboxLimits& limits) {
    const Layout& l = layout();
    prepare_v2_root_once(l.v2_own);
    parent_ = parent_dir(l.v2_own, parent);
    dir_ = create_leaf(parent_, name, [](const std::string& p) { enable_v2_controllers(p); });
    try {
      if (exists(dir_ + "/memory.swap.max")) write_text(dir_ + "/memory.swap.max", "0");
      // An OOM kill takes the whole stage, not one arbitrary process of it.
      if (exists(dir_ + "/memory.oom.group")) write_text(dir_ + "/memory.oom.group", "1");
      set_limits(limits);
    } catch (...) {
      remove_dir(dir_);
      throw;
    }
  }

  void set_limits(const SandboxLimits& limits) override {
    write_text(dir_ + "/memory.max",
               limits.memory_bytes > 0 ? std::to_string(limits.memory_bytes) : std::string("max"));
    write_text(dir_ + "/pids.max",
               limits.processes > 0 ? std::to_string(limits.processes) : std::string("max"));
  }

  ~V2StageCgroup() override {
    kill_all();
    remove_dir(dir_);
    ::rmdir(parent_.c_str());
  }

  void add_process(pid_t pid) override { write_text(dir_ + "/cgroup.procs", std::to_string(pid)); }
  int64_t cpu_time_us() override { return read_keyed(dir_ + "/cpu.stat", "usage_usec"); }
  int64_t memory_peak_bytes() override {
    int64_t peak = read_int(dir_ + "/memory.peak");  // kernel >= 5.19
    return peak >= 0 ? peak : read_int(dir_ + "/memory.current");
  }
  bool oom_killed() override { return read_keyed(dir_ + "/memory.events", "oom_kill") > 0; }
  bool cpu_time_is_exact() override { return true; }
  std::vector<pid_t> processes() override { return read_pids(dir_ + "/cgroup.procs"); }
  void kill_all() override {
    if (exists(dir_ + "/cgroup.kill")) {
      try {
        write_text(dir_ + "/cgroup.kill", "1");
      } catch (const std::system_error&) {
      }
    }
    kill_listed(dir_ + "/cgroup.procs");
  }

 private:
  std::string parent_, dir_;
};

// The pid in a stage cgroup's name "stage-<pid>-<n>" (see unique_stage_name in
// sandbox.cpp), or -1 when `name` is not one.
pid_t stage_owner(const std::string& name) {
  constexpr std::string_view kPrefix = "stage-";
  if (name.rfind(kPrefix, 0) != 0) return -1;
  const size_t dash = name.find('-', kPrefix.size());
  if (dash == std::string::npos || dash == kPrefix.size() || dash + 1 == name.size()) return -1;
  const std::string pid_text = name.substr(kPrefix.size(), dash - kPrefix.size());
  const std::string counter = name.substr(dash + 1);
  auto digits = [](const std::string& text) {
    return text.size() <= 18 && text.find_first_not_of("0123456789") == std::string::npos;
  };
  if (!digits(pid_text) || !digits(counter)) return -1;
  const long long pid = std::stoll(pid_text);
  return pid > 0 && pid <= 0x3fffffff ? static_cast<pid_t>(pid) : -1;
}

bool process_exists(pid_t pid) {
  return ::kill(pid, 0) == 0 || errno == EPERM;
}

// Removes the stale stage cgroups in one hierarchy's parent directory `dir`.
int remove_stale_in(const std::string& dir) {
  std::vector<std::string> stale;
  if (DIR* listing = ::opendir(dir.c_str())) {
    while (struct dirent* entry = ::readdir(listing)) {
      if (entry->d_type != DT_DIR) continue;
      const pid_t owner = stage_owner(entry->d_name);
      if (owner > 0 && owner != ::getpid() && !process_exists(owner))
        stale.push_back(dir + "/" + entry->d_name);
    }
    ::closedir(listing);
  }
  int removed = 0;
  for (const std::string& leaf : stale) {
    // Its server is dead, so whatever is left in it was started by that server's box.
    if (exists(leaf + "/cgroup.kill")) {
      try {
        write_text(leaf + "/cgroup.kill", "1");
      } catch (const std::system_error&) {
      }
    }
    kill_listed(leaf + "/cgroup.procs");
    if (remove_dir(leaf)) ++removed;
  }
  return removed;
}

}  // namespace

std::unique_ptr<StageCgroup> create_stage_cgroup(const std::string& parent, const std::string& name,
                                                 const SandboxLimits& limits) {
  check_name(name, parent);
  switch (layout().mode) {
    case Layout::Mode::kV2:
      return std::make_unique<V2StageCgroup>(parent, name, limits);
    case Layout::Mode::kHybrid:
      return std::make_unique<V1StageCgroup>(parent, name, limits);
    case Layout::Mode::kNone:
      break;
  }
  throw_errno(ENOTSUP, "cgroups: " + layout().description);
}

int remove_stale_stage_cgroups(const std::string& parent) {
  if (parent == "." || parent == ".." || parent.find('/') != std::string::npos) return 0;
  const Layout& l = layout();
  int removed = 0;
  for (const std::string* base : {&l.v2_own, &l.memory_own, &l.pids_own, &l.cpuacct_own})
    if (!base->empty()) removed += remove_stale_in(parent_dir(*base, parent));
  return removed;
}

std::string describe_cgroup_support() {
  return layout().description;
}

}  // namespace cutor::sandbox
