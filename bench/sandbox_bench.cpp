// sandbox_bench: times one command run N times through one of four launchers and prints
// p50/p95 (bench/run.sh builds it against build/release's cutor_sandbox and cutor_model).
//
//   sandbox_bench MODE N [-- ARGV...]        (ARGV defaults to /bin/true)
//
// MODE:
//   fork      fork + execve + waitpid, nothing else (the floor)
//   bwrap     bwrap --unshare-all with the base system read-only, /proc, /dev, a tmpfs /tmp
//   sandbox   cutor's sandbox, isolated (namespaces, cgroups, seccomp), one workspace reused
//   sandbox-ondemand  the same with prepared_boxes = 0: every box built when its run starts
//   plain     cutor's sandbox with isolate=false (a plain limited child process)
//
// Every iteration must exit 0 (checked); failures are counted and the first one printed.
// Output: one line "mode=… n=… errors=… p50_ms=… p95_ms=… p99_ms=… mean_ms=…".
#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <stop_token>
#include <string>
#include <vector>

#include "model/limits.h"
#include "sandbox/sandbox.h"

namespace {

using Clock = std::chrono::steady_clock;

// Runs argv with a clean environment and waits; returns a description of a failure or "".
std::string fork_exec(const std::vector<std::string>& argv) {
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  char path_env[] = "PATH=/usr/bin:/bin";
  char* envp[] = {path_env, nullptr};
  pid_t pid = ::fork();
  if (pid < 0) return std::string("fork: ") + std::strerror(errno);
  if (pid == 0) {
    // The command's output is not ours to print (sandbox runs capture theirs too).
    int devnull = ::open("/dev/null", O_WRONLY | O_CLOEXEC);
    if (devnull >= 0) {
      ::dup2(devnull, 1);
      ::dup2(devnull, 2);
    }
    ::execve(args[0], args.data(), envp);
    ::_exit(127);
  }
  int status = 0;
  if (::waitpid(pid, &status, 0) < 0) return std::string("waitpid: ") + std::strerror(errno);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
    return argv[0] + ": wait status " + std::to_string(status);
  return "";
}

std::vector<std::string> bwrap_argv(const std::vector<std::string>& command) {
  std::vector<std::string> argv = {"/usr/bin/bwrap", "--unshare-all", "--die-with-parent"};
  for (const char* dir : {"/usr", "/bin", "/lib", "/lib64", "/sbin"})
    if (std::filesystem::exists(dir)) argv.insert(argv.end(), {"--ro-bind", dir, dir});
  argv.insert(argv.end(), {"--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"});
  argv.insert(argv.end(), command.begin(), command.end());
  return argv;
}

double percentile(const std::vector<double>& sorted, double p) {
  if (sorted.empty()) return 0;
  size_t i = static_cast<size_t>(p / 100.0 * static_cast<double>(sorted.size() - 1) + 0.5);
  return sorted[std::min(i, sorted.size() - 1)];
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::cerr << "usage: sandbox_bench fork|bwrap|sandbox|sandbox-ondemand|plain N [-- ARGV...]\n";
    return 2;
  }
  const std::string mode = argv[1];
  const int n = std::atoi(argv[2]);
  if (n < 1 || n > 100000) {
    std::cerr << "sandbox_bench: N must be 1..100000\n";
    return 2;
  }
  std::vector<std::string> command;
  for (int i = 3; i < argc; ++i)
    if (std::strcmp(argv[i], "--") != 0 || i != 3) command.push_back(argv[i]);
  if (command.empty()) command = {"/bin/true"};

  std::unique_ptr<cutor::Sandbox> sandbox;
  std::unique_ptr<cutor::Workspace> workspace;
  std::filesystem::path scratch;
  cutor::SandboxSpec spec;
  if (mode == "sandbox" || mode == "sandbox-ondemand" || mode == "plain") {
    cutor::SandboxOptions options;
    options.isolate = mode != "plain";
    if (mode == "sandbox-ondemand") options.prepared_boxes = 0;
    sandbox = cutor::make_sandbox(options);
    char tmpl[] = "/tmp/cutor-sandbox-bench-XXXXXX";
    if (!::mkdtemp(tmpl)) {
      std::perror("sandbox_bench: mkdtemp");
      return 1;
    }
    scratch = tmpl;
    workspace = sandbox->make_workspace(scratch.string(), "ws");
    spec.argv = command;
    spec.env = {"PATH=/usr/bin:/bin", "HOME=/box", "LANG=C.UTF-8"};
    spec.workspace = workspace.get();
    spec.limits = cutor::LimitTable::builtin().default_for(cutor::Stage::kRun);
  } else if (mode == "bwrap") {
    command = bwrap_argv(command);
  } else if (mode != "fork") {
    std::cerr << "sandbox_bench: unknown mode " << mode << "\n";
    return 2;
  }

  std::vector<double> ms;
  int errors = 0;
  std::string first_error;
  const auto give_up = Clock::now() + std::chrono::minutes(5);
  for (int i = 0; i < n && Clock::now() < give_up; ++i) {
    auto t0 = Clock::now();
    std::string err;
    if (sandbox) {
      cutor::StageResult r = sandbox->run(spec, std::stop_token{});
      if (r.status != cutor::StageStatus::kOk)
        err = std::string(cutor::stage_status_name(r.status)) + ": " + r.stderr_data;
    } else {
      err = fork_exec(command);
    }
    double dt = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
    if (err.empty()) {
      ms.push_back(dt);
    } else if (errors++ == 0) {
      first_error = err;
    }
  }
  workspace.reset();
  if (!scratch.empty()) {
    std::error_code ec;
    std::filesystem::remove_all(scratch, ec);
  }
  std::vector<double> sorted = ms;
  std::sort(sorted.begin(), sorted.end());
  double mean = 0;
  for (double v : ms) mean += v;
  if (!ms.empty()) mean /= static_cast<double>(ms.size());
  std::printf("mode=%s n=%zu errors=%d p50_ms=%.3f p95_ms=%.3f p99_ms=%.3f mean_ms=%.3f\n",
              mode.c_str(), ms.size(), errors, percentile(sorted, 50), percentile(sorted, 95),
              percentile(sorted, 99), mean);
  if (errors)
    std::fprintf(stderr, "sandbox_bench %s: first error: %s\n", mode.c_str(), first_error.c_str());
  return 0;
}
