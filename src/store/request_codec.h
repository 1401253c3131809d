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
// Nothing may follow the last limit.
#pragma once

#include <string>
#include <string_view>

#include "model/submission.h"

namespace cutor {

std::string encode_request(const SubmissionRequest& r);

// Throws StoreError naming what is wrong for a truncated, overlong or otherwise
// malformed record (never reads past `bytes`).
SubmissionRequest decode_request(std::string_view bytes);

}  // namespace cutor
