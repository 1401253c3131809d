# What the box can learn from /proc about the host side: box init (PID 1) is the server
# forked, so its files would show the server's environment, memory, fds and cwd.
for f in environ maps mem stack syscall auxv; do
  if cat "/proc/1/$f" 2>/dev/null; then echo "LEAK /proc/1/$f"; else echo "denied /proc/1/$f"; fi
done
for d in cwd/ root/ fd/; do
  if ls "/proc/1/$d" 2>/dev/null; then echo "LEAK /proc/1/$d"; else echo "denied /proc/1/$d"; fi
done
if readlink /proc/1/exe; then echo "LEAK /proc/1/exe"; else echo "denied /proc/1/exe"; fi
echo "--- cmdline"; tr '\0' ' ' < /proc/1/cmdline; echo
echo "--- mountinfo"; cat /proc/self/mountinfo
echo "--- environ"; env
echo "--- cgroup"; cat /proc/self/cgroup
