// Internal to src/sandbox: networking inside the box's fresh network namespace.
#pragma once

namespace cutor::sandbox {

// Brings the namespace's loopback interface up, so 127.0.0.1 and ::1 work inside the box.
// Nothing else exists in a fresh network namespace, so there is no route out.
// Throws std::system_error naming the ioctl on failure.
void bring_up_loopback();

}  // namespace cutor::sandbox
