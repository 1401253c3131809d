// Internal to cutor_store: the compact binary encoding of a SubmissionRequest, stored
// as one BLOB per submission.
//
// Layout (every integer an unsigned LEB128 varint; int64 limits as their two's
// complement bit pattern; every string a varint length then raw bytes, so content
// may hold any byte including NUL):
//   version(=1)
//   nfiles, then (name, content) per file
//   stdin
//   nargs, then each arg
//   nenv, then (key, value) per entry
//   4 stages x 6 limits, in kAllStages x kLimitNames order
// and, in version 2 (a request with tests; version 1 has none):
//   ntests, then per test (name, stdin, nargs + args, has_expected, [expected], 6 limits)
//   checker type, abs and rel tolerance (IEEE bits), checker file, stop_on_first_failure,
//   interactor file (empty: none)
// and, in version 3 (a request with adapter_data; its tests section may be empty):
//   the version 2 fields, then adapter_data
// Nothing may follow. A record is written in the lowest version that holds it.
#pragma once

#include <string>
#include <string_view>

#include "model/submission.h"

namespace cutor {

std::string encode_request(const SubmissionRequest& r);

// Throws StoreError naming what is wrong for a truncated, overlong or otherwise
// malformed record (never reads past `bytes`).
SubmissionRequest decode_request(std::string_view bytes);

// One test's result as one BLOB (versioned like the request record).
std::string encode_test_result(const TestResult& t);
TestResult decode_test_result(std::string_view bytes);

}  // namespace cutor
