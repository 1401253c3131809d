// What isolation this host supports, for `cutor doctor`.
#pragma once

#include <ostream>

namespace cutor::sandbox {

// Prints one line per capability the sandbox uses ("ok"/"missing" and why) and returns 0
// when the isolated sandbox can run here, non-zero when namespaces or mounts fail.
int run_doctor(std::ostream& out);

}  // namespace cutor::sandbox
