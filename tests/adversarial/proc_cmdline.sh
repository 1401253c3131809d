# Host paths the box can read without listing anything: the command line of box init (the
# server, forked), the mount table, the cgroup path.
tr '\0' ' ' < /proc/1/cmdline; echo
cat /proc/self/mountinfo /proc/1/mountinfo /proc/self/cgroup 2>/dev/null
