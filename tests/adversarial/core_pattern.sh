# The core_pattern escape: a "|program" core pattern runs as root on the host when any
# process dumps core. Writing it needs root; the core rlimit cannot be raised either.
if (echo '|/box/evil' > /proc/sys/kernel/core_pattern) 2>/dev/null; then echo "WROTE core_pattern"; else echo "refused core_pattern"; fi
if (ulimit -c unlimited) 2>/dev/null; then echo "RAISED core limit"; else echo "refused core limit"; fi
echo "core limit $(ulimit -c)"
