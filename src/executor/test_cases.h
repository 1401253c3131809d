// Internal to the executor: running a compiled submission's test cases (issue 14), each in
// a fresh box on its own copy of the compiled workspace, judged by the submission's checker.
#pragma once

#include <functional>
#include <memory>
#include <stop_token>
#include <string>
#include <vector>

#include "model/submission.h"
#include "sandbox/sandbox.h"
#include "store/submission_store.h"

namespace cutor {

// What running the tests needs from the executor.
struct TestCaseHost {
  // A fresh, empty workspace named `name` (one path component); throws on failure.
  std::function<std::unique_ptr<Workspace>(const std::string& name)> make_workspace;
  // Runs `spec` (argv, stdin, workspace, limits and stdio fds filled in by the caller) in a
  // fresh box with the submission's environment and variables.
  std::function<StageResult(SandboxSpec spec)> run;
};

struct TestCasesOutcome {
  Result result = Result::kAccepted;
  StageResult run;  // the first failing test's run, else the last test's
  bool cancelled = false;
};

// Runs every test of `s` in order (after a failure with stop_on_first_failure the rest stay
// unwritten: SKIPPED once finished), writing each result to `store` as it ends. Stops early
// when `cancel` is requested (then `cancelled`) or a write is refused (FINISHED meanwhile:
// cancelled too).
TestCasesOutcome run_test_cases(const Submission& s, const Workspace& compiled,
                                SubmissionStore& store, const TestCaseHost& host,
                                std::stop_token cancel);

}  // namespace cutor
