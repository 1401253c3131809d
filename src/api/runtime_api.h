// /api/v1/runtimes and the `"runtime"` field of a submission (issue 15): the catalogue
// lives in the request store; these functions validate, render and expand it.
#pragma once

#include <boost/json/array.hpp>
#include <boost/json/object.hpp>
#include <expected>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "api/dependency_service.h"
#include "api/submission_json.h"
#include "runtimes/runtime.h"
#include "store/submission_store.h"

namespace cutor {

// Every runtime in the store (entries that no longer parse are skipped with a warning).
std::vector<Runtime> load_catalogue(SubmissionStore& store);

// Puts the shipped runtimes into the store (replacing entries with the same name and version).
void put_runtimes(SubmissionStore& store, const std::vector<Runtime>& runtimes);

// GET /api/v1/runtimes: {"runtimes": [entry...]}.
boost::json::object runtimes_to_json(const std::vector<Runtime>& runtimes);

// POST /api/v1/runtimes: validates `body` like a submission, stores it, starts building its
// cutor.nix ahead of time when `deps` is given, and answers the entry. 409 when that name
// and version exist.
std::expected<boost::json::object, ApiError> add_runtime(SubmissionStore& store,
                                                         std::string_view body,
                                                         DependencyService* deps);

// DELETE /api/v1/runtimes/{name}/{version}: 404 when there is none.
std::expected<void, ApiError> remove_runtime(SubmissionStore& store, const std::string& name,
                                             const std::string& version);

// A submission body with "runtime" (and optional "version", a range) becomes the same body
// with the runtime's cutor.nix, compile.sh and run.sh appended to "files"; other bodies are
// returned as they are. `catalogue` is called only when the body names a runtime.
std::expected<std::string, ApiError> expand_runtime_fields(
    std::string_view body, const std::function<std::vector<Runtime>()>& catalogue);

}  // namespace cutor
