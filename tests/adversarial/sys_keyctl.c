/* The kernel keyring: shared across the host's users' sessions, a known leak and CVE source. */
#include <sys/syscall.h>
#include <unistd.h>

#include "sys_report.h"
int main(void) {
  report("add_key", syscall(SYS_add_key, "user", "cutor-adv", "secret", 6, -3 /*session*/));
  report("request_key", syscall(SYS_request_key, "user", "cutor-adv", NULL, 0));
  report("keyctl get_keyring_id", syscall(SYS_keyctl, 0 /*GET_KEYRING_ID*/, -3, 0));
  report("keyctl join_session", syscall(SYS_keyctl, 1 /*JOIN_SESSION_KEYRING*/, "x"));
  return 0;
}
