// A project archive (issue 15): a submission file named cutor.zip is unpacked into the
// workspace by Debian's `unzip`, run IN THE SANDBOX as part of the build stage, so an
// untrusted archive meets the box's limits (time, memory, file size, the workspace's size)
// and never the host. Before unpacking, the archive's listing is checked in the box too.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "model/submission.h"  // kProjectArchive

namespace cutor {

// At most this many entries (files and directories) in a project archive.
inline constexpr int64_t kMaxArchiveEntries = 10'000;

// The argv that unpacks kProjectArchive in the box's working directory, then removes it.
// Exit codes: unzip's own (9: not a zip archive, 50: the workspace is full...; killed by
// SIGXFSZ at the file size limit) or 3 when the listing is refused, with "cutor: ..." on stderr
// saying why: more than kMaxArchiveEntries entries, an absolute or `..` path, a symbolic link, or
// an entry that would replace the archive or a file already written (cutor.nix, compile.sh, run.sh,
// the other submission files).
std::vector<std::string> unpack_argv();

}  // namespace cutor
