# run.sh after compile_daemon.sh: the ticks file must not grow any more, and no process but
# this stage's own may be running (the daemon's command line names the ticks file).
a=$(wc -l < ticks)
sleep 0.5
b=$(wc -l < ticks)
echo "ticks $([ "$a" -gt 0 ] && echo seen) $([ "$a" = "$b" ] && echo stopped || echo "GREW $a -> $b")"
echo "daemons: $(for p in /proc/[0-9]*; do tr '\0' ' ' < "$p/cmdline" 2>/dev/null; echo; done | grep -c '[t]ick >>')"
