// The executor blames the host, not the submission, for the host's failures: a workspace
// that cannot be made, a sandbox that reports INTERNAL_ERROR in compile, a missing
// environment cache. Each ends INTERNAL_ERROR with the why in that stage's stderr and output.
#include <gtest/gtest.h>

#include <cstring>
#include <system_error>

#include "executor/executor.h"
#include "model/submission.h"
#include "store/submission_store.h"

namespace cutor {
namespace {

class FakeWorkspace : public Workspace {
 public:
  const std::string& path() const override { return path_; }
  int dirfd() const override { return -1; }
  void write_file(std::string_view, std::string_view, bool) override {}
  void copy_from(const Workspace&) override {}

 private:
  std::string path_ = "/nonexistent";
};

// A sandbox whose failures are chosen by the test.
class FakeSandbox : public Sandbox {
 public:
  int workspace_errno = 0;                        // != 0: make_workspace throws it
  StageStatus compile_status = StageStatus::kOk;  // what a compile stage reports
  std::unique_ptr<Workspace> make_workspace(const std::string&, const std::string&) override {
    if (workspace_errno)
      throw std::system_error(workspace_errno, std::generic_category(), "mount tmpfs");
    return std::make_unique<FakeWorkspace>();
  }
  void remove_stale_workspaces(const std::string&) override {}
  StageResult run(const SandboxSpec& spec, std::stop_token) override {
    StageResult r;
    r.status = spec.argv.at(1) == "compile.sh" ? compile_status : StageStatus::kOk;
    if (r.status == StageStatus::kInternalError) {
      r.stderr_data = "cutor: internal error: the box spawner is gone\n";
      r.output = r.stderr_data;
    } else {
      r.code = 0;
    }
    return r;
  }
  SandboxHealth health() const override { return {}; }
};

Submission run_one(FakeSandbox& sandbox, std::vector<SubmissionFile> files,
                   ExecutorOptions options = {}) {
  auto store = open_sqlite_store({.path = ":memory:", .synchronous_full = false});
  Submission s;
  s.id = new_uuid();
  s.created_at_ms = now_unix_ms();
  s.request.files = std::move(files);
  store->insert(s, 0);
  options.work_dir = "/nonexistent";
  Executor executor(*store, sandbox, nullptr, options);
  auto claimed = store->claim_next(std::stop_token{});
  executor.execute(*claimed, std::stop_source().get_token());
  return *store->get(s.id);
}

TEST(ExecutorInternalErrorTest, AWorkspaceTheHostCannotMakeIsInternalNotBuildError) {
  FakeSandbox sandbox;
  sandbox.workspace_errno = ENOSPC;
  Submission s = run_one(sandbox, {{"run.sh", "echo hi"}});
  EXPECT_EQ(s.result, Result::kInternalError);
  const StageResult& build = s.stage(Stage::kBuild);
  EXPECT_EQ(build.status, StageStatus::kInternalError);
  EXPECT_FALSE(build.code.has_value());
  for (const std::string* text : {&build.stderr_data, &build.output}) {
    EXPECT_NE(text->find("cannot make the workspace: mount tmpfs"), std::string::npos) << *text;
    EXPECT_NE(text->find(std::strerror(ENOSPC)), std::string::npos) << *text;
  }
  EXPECT_EQ(s.stage(Stage::kRun).status, StageStatus::kSkipped);
}

TEST(ExecutorInternalErrorTest, AnInternalErrorInCompileIsNotACompileError) {
  FakeSandbox sandbox;
  sandbox.compile_status = StageStatus::kInternalError;
  Submission s = run_one(sandbox, {{"run.sh", "./a.out"}, {"compile.sh", "cc main.c"}});
  EXPECT_EQ(s.result, Result::kInternalError);
  EXPECT_EQ(s.stage(Stage::kCompile).status, StageStatus::kInternalError);
  EXPECT_NE(s.stage(Stage::kCompile).output.find("spawner is gone"), std::string::npos);
}

TEST(ExecutorInternalErrorTest, ACompileThatFailsIsStillACompileError) {
  FakeSandbox sandbox;
  sandbox.compile_status = StageStatus::kNonzeroExit;
  Submission s = run_one(sandbox, {{"run.sh", "./a.out"}, {"compile.sh", "cc main.c"}});
  EXPECT_EQ(s.result, Result::kCompileError);
}

TEST(ExecutorInternalErrorTest, NoEnvironmentCacheSaysWhyAndIsInternal) {
  FakeSandbox sandbox;
  ExecutorOptions options;
  options.no_environments_reason = "Nix cannot build: the group 'nixbld' ... does not exist";
  Submission s =
      run_one(sandbox, {{"run.sh", "echo"}, {"cutor.nix", "{ pkgs }: pkgs.mkShell {}"}}, options);
  EXPECT_EQ(s.result, Result::kInternalError);
  const StageResult& env = s.stage(Stage::kEnvironment);
  EXPECT_EQ(env.status, StageStatus::kInternalError);
  EXPECT_NE(env.stderr_data.find(options.no_environments_reason), std::string::npos)
      << env.stderr_data;
  EXPECT_EQ(env.stderr_data, env.output);
}

}  // namespace
}  // namespace cutor
