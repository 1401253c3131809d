// Internal to src/sandbox: networking inside the box's fresh network namespace.
#pragma once

#include "sandbox/fd.h"

namespace cutor::sandbox {

// Brings the namespace's loopback interface up, so 127.0.0.1 and ::1 work inside the box.
// Nothing else exists in a fresh network namespace, so there is no route out.
// Throws std::system_error naming the ioctl on failure.
void bring_up_loopback();

// A fresh network namespace with lo up, made ahead of time by a background thread (creating
// one costs ~0.5 ms of sysctl and device registration that need not sit on a stage's
// critical path). Each is handed out once and never returned: a box never gets a namespace
// another box used (a used one could still hold its sockets' TIME_WAIT state, port
// reservations or abstract unix names). Its lo is up already. An invalid fd when none is
// ready or this host cannot make them: the box then unshares its own. Never blocks;
// thread-safe.
UniqueFd take_prepared_net_namespace();

// Starts the background thread (once per process) that keeps a couple ready.
void start_preparing_net_namespaces();

// Asks the background thread to make up for what was taken. Called when a stage has ended
// rather than when it starts, so that making a namespace (~0.5 ms of cpu) does not compete
// with the stage's own setup on a busy host.
void refill_prepared_net_namespaces();

}  // namespace cutor::sandbox
