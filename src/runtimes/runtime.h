// The runtime catalogue (issue 15): a runtime names a language by data, so a client can
// send `"runtime": "python"` instead of writing cutor.nix and run.sh itself.
//
// A shipped runtime is a directory of the repository's runtimes/ folder:
//   runtimes/python/runtime.json   {"name": "python", "version": "3.11.2",
//                                   "aliases": ["py", "python3"], "source_file": "main.py"}
//   runtimes/python/cutor.nix      optional: the dependencies (default environment without)
//   runtimes/python/compile.sh     optional
//   runtimes/python/run.sh         required
// Runtimes added through the API carry the same fields as one JSON object (runtime_to_json).
#pragma once

#include <boost/json/object.hpp>
#include <expected>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace cutor {

struct Runtime {
  std::string name;     // [a-z0-9+._-], 1 to 64 characters
  std::string version;  // MAJOR.MINOR.PATCH
  std::vector<std::string> aliases;
  std::string source_file;  // the main file's name, at the workspace root
  std::optional<std::string> nix;
  std::optional<std::string> compile_sh;
  std::string run_sh;
  bool operator==(const Runtime&) const = default;
};

// A refusal: the field at fault ("version", "aliases[1]"...) and why.
struct RuntimeError {
  std::string field;
  std::string message;
};

// Reads {"name", "version", "aliases"?, "source_file", "nix"?, "compile_sh"?, "run_sh"} with
// every rule checked; unknown fields are refused.
std::expected<Runtime, RuntimeError> runtime_from_json(const boost::json::object& o);
boost::json::object runtime_to_json(const Runtime& r);

// Reads one runtime directory (layout above). Throws std::runtime_error naming the file.
Runtime load_runtime_dir(const std::string& dir);
// Every subdirectory of `folder` holding a runtime.json, sorted by name. Throws
// std::runtime_error naming the directory on any bad entry or a (name, version) twice.
std::vector<Runtime> load_runtime_folder(const std::string& folder);

// The runtime called `name` (or with `name` among its aliases) whose version is the
// highest in `range` ("*" for any). nullptr when none; an ill-formed range is an error.
std::expected<const Runtime*, std::string> find_runtime(const std::vector<Runtime>& runtimes,
                                                        std::string_view name,
                                                        std::string_view range);

}  // namespace cutor
