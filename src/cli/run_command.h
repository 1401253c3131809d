// `cutor run DIR`: one directory as one submission, executed here in-process.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "model/submission.h"

namespace cutor {

struct RunCommandOptions {
  std::string dir;
  std::string stdin_file;                   // empty: no stdin
  std::string nix_path;                     // empty: $NIX_PATH
  std::optional<std::string> substituters;  // Nix's --option substituters; unset: Nix's own
  std::string data_dir;  // environment cache; empty: $XDG_CACHE_HOME/cutor or ~/.cache/cutor
  std::vector<std::string> args;
  std::vector<std::string> env;     // KEY=VALUE
  std::vector<std::string> limits;  // stage.limit=N
  bool base64 = false;
  bool isolate = true;
};

// Reads every regular file below `dir` (symlinks and special files are refused) into a
// request with the built-in default limits. Throws std::runtime_error naming the file.
SubmissionRequest load_directory(const std::string& dir);

// Runs it and prints the submission as JSON on stdout. Returns the process exit code:
// the run stage's code, 128+N when signal N ended it (a limit's kill included), 125 when
// the run stage did not start.
int run_command(const RunCommandOptions& options);

// The exit code `cutor run` gives for a finished submission.
int exit_code_for(const Submission& s);

}  // namespace cutor
