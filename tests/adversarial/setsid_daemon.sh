# Leaves a setsid'd, HUP-immune process behind ($1 is a marker in its argv) and exits at once.
setsid sh -c "trap '' HUP TERM INT; sleep 300 $1" </dev/null >/dev/null 2>&1 &
nohup setsid sleep 301 "$1" </dev/null >/dev/null 2>&1 &
echo "left behind"
