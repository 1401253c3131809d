# Reads the host secret ($1) by every path that could lead out of the box: directly, through
# the root links of every visible process and of the server's pid ($2), and ../ escapes.
secret=$1 server_pid=$2
try() { if cat "$1" 2>/dev/null; then echo "LEAK via $1"; else echo "denied $1"; fi; }
try "$secret"
try "/proc/self/root$secret"
try "/proc/1/root$secret"
try "/proc/$server_pid/root$secret"
try "/proc/$$/root$secret"
for p in /proc/[0-9]*; do try "$p/root$secret"; try "$p/cwd/$secret"; done
try "/box/../../../..$secret"
try "../../../../../..$secret"
try "/proc/self/cwd/../../..$secret"
