# compile.sh: leaves a daemon behind that keeps appending to a workspace file. The compile
# stage ends when this script exits, and the daemon with it: the run stage must find the
# file no longer growing.
setsid sh -c 'while :; do echo tick >> /box/ticks; sleep 0.05; done' </dev/null >/dev/null 2>&1 &
sleep 0.3
# The same search the run stage makes, proving it finds the daemon while it lives.
echo "daemons: $(for p in /proc/[0-9]*; do tr '\0' ' ' < "$p/cmdline" 2>/dev/null; echo; done | grep -c '[t]ick >>')"
echo compiled
