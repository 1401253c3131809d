#include "executor/test_cases.h"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <mutex>
#include <system_error>
#include <thread>

#include "judge/checkers.h"

namespace cutor {
namespace {

// The checker's files, passed to it as $1 $2 $3 (paths relative to its working directory).
constexpr const char* kCheckerInput = ".cutor-check/input";
constexpr const char* kCheckerExpected = ".cutor-check/expected_output";
constexpr const char* kCheckerActual = ".cutor-check/actual_output";
constexpr size_t kMaxCheckerMessage = 64 * 1024;

std::string clip(std::string text) {
  if (text.size() > kMaxCheckerMessage) {
    text.resize(kMaxCheckerMessage);
    text += "...";
  }
  return text;
}

std::string describe_end(const StageResult& r) {
  std::string what(stage_status_name(r.status));
  if (r.code) what += " (exit code " + std::to_string(*r.code) + ")";
  if (r.signal) what += " (" + signal_name(*r.signal) + ")";
  return what;
}

StageResult internal_error(const std::string& why) {
  StageResult r;
  r.status = StageStatus::kInternalError;
  r.stderr_data = "cutor: internal error: " + why + "\n";
  r.output = r.stderr_data;
  return r;
}

class TestRunner {
 public:
  TestRunner(const Submission& s, const Workspace& compiled, const TestCaseHost& host,
             std::stop_token cancel)
      : s_(s), compiled_(compiled), host_(host), cancel_(std::move(cancel)) {}

  TestResult run(size_t index) {
    const TestCase& test = s_.request.tests[index];
    TestResult t;
    t.name = test.name;
    std::unique_ptr<Workspace> ws;
    try {
      ws = host_.make_workspace(s_.id + "-test-" + std::to_string(index));
      ws->copy_from(compiled_);
    } catch (const std::exception& e) {
      spdlog::error("submission {} test {}: {}", s_.id, test.name, e.what());
      t.run = internal_error(std::string("cannot make the test's workspace: ") + e.what());
      t.verdict = Verdict::kInternalError;
      return t;
    }
    SandboxSpec spec;
    spec.argv = {"sh", "run.sh"};
    spec.argv.insert(spec.argv.end(), test.args.begin(), test.args.end());
    spec.workspace = ws.get();
    spec.limits = test.limits;
    if (!s_.request.interactor_file.empty()) {
      run_interactive(index, std::move(spec), t);
      return t;
    }
    spec.stdin_data = test.stdin_data;
    t.run = host_.run(std::move(spec));
    t.verdict = judge::verdict_of_run(t.run);
    if (t.verdict != Verdict::kAccepted || !test.expected_output) return t;
    if (s_.request.checker.type == CheckerType::kScript) {
      run_checker(index, t);
    } else {
      judge::CheckResult c =
          judge::check_output(s_.request.checker, *test.expected_output, t.run.stdout_data);
      if (!c.accepted) t.verdict = Verdict::kWrongAnswer;
      t.checker_message = std::move(c.message);
    }
    return t;
  }

 private:
  // The script checker: its own box on a copy of the compiled workspace with the test's
  // input, expected and actual output. Exit 0 accepts, 1 refuses; anything else (another
  // code, a signal, a limit) is the checker's error. Its stdout is the message.
  void run_checker(size_t index, TestResult& t) {
    const TestCase& test = s_.request.tests[index];
    std::unique_ptr<Workspace> ws;
    try {
      ws = host_.make_workspace(s_.id + "-check-" + std::to_string(index));
      ws->copy_from(compiled_);
      ws->write_file(kCheckerInput, test.stdin_data, false);
      ws->write_file(kCheckerExpected, *test.expected_output, false);
      ws->write_file(kCheckerActual, t.run.stdout_data, false);
    } catch (const std::exception& e) {
      t.verdict = Verdict::kCheckerError;
      t.checker_message = std::string("cannot prepare the checker: ") + e.what();
      return;
    }
    SandboxSpec spec;
    spec.argv = {"sh", s_.request.checker.file, kCheckerInput, kCheckerExpected, kCheckerActual};
    spec.workspace = ws.get();
    spec.limits = s_.request.limits_for(Stage::kRun);
    StageResult c = host_.run(std::move(spec));
    if (c.status == StageStatus::kOk || (c.status == StageStatus::kNonzeroExit && c.code == 1)) {
      t.verdict = c.status == StageStatus::kOk ? Verdict::kAccepted : Verdict::kWrongAnswer;
      t.checker_message = clip(std::move(c.stdout_data));
      return;
    }
    t.verdict = Verdict::kCheckerError;
    t.checker_message = clip("checker " + s_.request.checker.file + " ended " + describe_end(c) +
                             (c.output.empty() ? "" : ": " + c.output));
  }

  // run.sh and the interactor at once, each one's stdout the other's stdin. The interactor
  // runs in its own box on a copy of the compiled workspace with the test's input and
  // expected output as files ($1, $2), under the submission's run limits. A program that
  // broke a limit gets that verdict; otherwise the interactor's exit code decides (0: the
  // program's own verdict, 1: WRONG_ANSWER, else CHECKER_ERROR). Its stderr is the message.
  void run_interactive(size_t index, SandboxSpec program, TestResult& t) {
    const TestCase& test = s_.request.tests[index];
    std::unique_ptr<Workspace> ws;
    InteractionPipes pipes;
    try {
      ws = host_.make_workspace(s_.id + "-interactor-" + std::to_string(index));
      ws->copy_from(compiled_);
      ws->write_file(kCheckerInput, test.stdin_data, false);
      ws->write_file(kCheckerExpected, test.expected_output.value_or(""), false);
      pipes.open();
    } catch (const std::exception& e) {
      t.run = internal_error(std::string("cannot prepare the interactor: ") + e.what());
      t.verdict = Verdict::kInternalError;
      return;
    }
    program.stdin_fd = pipes.to_program[0];
    program.stdout_fd = pipes.to_interactor[1];
    program.on_started = [&pipes] { pipes.close_program_ends(); };
    SandboxSpec interactor;
    interactor.argv = {"sh", s_.request.interactor_file, kCheckerInput, kCheckerExpected};
    interactor.workspace = ws.get();
    interactor.limits = s_.request.limits_for(Stage::kRun);
    interactor.stdin_fd = pipes.to_interactor[0];
    interactor.stdout_fd = pipes.to_program[1];
    interactor.on_started = [&pipes] { pipes.close_interactor_ends(); };
    StageResult judged;
    {
      std::jthread other([&] {
        judged = host_.run(std::move(interactor));
        pipes.close_interactor_ends();  // it never started: the program must see EOF
      });
      t.run = host_.run(std::move(program));
      pipes.close_program_ends();
    }
    t.verdict = judge::verdict_of_run(t.run);
    t.checker_message = clip(judged.stderr_data);
    if (t.verdict == Verdict::kTimeLimitExceeded || t.verdict == Verdict::kMemoryLimitExceeded ||
        t.verdict == Verdict::kOutputLimitExceeded || t.verdict == Verdict::kInternalError)
      return;
    if (judged.status == StageStatus::kOk) return;  // the program's own verdict
    if (judged.status == StageStatus::kNonzeroExit && judged.code == 1) {
      t.verdict = Verdict::kWrongAnswer;
      return;
    }
    t.verdict = Verdict::kCheckerError;
    t.checker_message =
        clip("interactor " + s_.request.interactor_file + " ended " + describe_end(judged) +
             (judged.output.empty() ? "" : ": " + judged.output));
  }

  // The two pipes between a program and its interactor. Each side's ends are closed here
  // once its box holds them (under a mutex: the two runs are on two threads), so either
  // side's exit is EOF for the other.
  struct InteractionPipes {
    int to_program[2] = {-1, -1};
    int to_interactor[2] = {-1, -1};
    std::mutex mu;
    void open() {
      if (::pipe2(to_program, O_CLOEXEC) != 0 || ::pipe2(to_interactor, O_CLOEXEC) != 0)
        throw std::system_error(errno, std::generic_category(), "pipe2 for the interactor");
    }
    static void close_fd(int& fd) {
      if (fd >= 0) ::close(fd);
      fd = -1;
    }
    void close_program_ends() {
      std::lock_guard lock(mu);
      close_fd(to_program[0]);
      close_fd(to_interactor[1]);
    }
    void close_interactor_ends() {
      std::lock_guard lock(mu);
      close_fd(to_interactor[0]);
      close_fd(to_program[1]);
    }
    ~InteractionPipes() {
      close_program_ends();
      close_interactor_ends();
    }
  };

  const Submission& s_;
  const Workspace& compiled_;
  const TestCaseHost& host_;
  std::stop_token cancel_;
};

}  // namespace

TestCasesOutcome run_test_cases(const Submission& s, const Workspace& compiled,
                                SubmissionStore& store, const TestCaseHost& host,
                                std::stop_token cancel) {
  TestCasesOutcome out;
  TestRunner runner(s, compiled, host, cancel);
  bool failed = false;
  for (size_t i = 0; i < s.request.tests.size(); ++i) {
    if (cancel.stop_requested()) {
      out.cancelled = true;
      return out;
    }
    TestResult t = runner.run(i);
    if (cancel.stop_requested()) {  // killed by the cancel, not by its own fault
      out.cancelled = true;
      return out;
    }
    const bool accepted = t.verdict == Verdict::kAccepted;
    if (!failed) {
      out.run = t.run;
      if (!accepted) out.result = judge::result_of_verdict(t.verdict);
    }
    if (!store.write_tests(s.id, {{static_cast<int>(i), std::move(t)}})) {
      out.cancelled = true;  // FINISHED meanwhile
      return out;
    }
    if (!accepted) {
      failed = true;
      if (s.request.stop_on_first_failure) break;
    }
  }
  return out;
}

}  // namespace cutor
