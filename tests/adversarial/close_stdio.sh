# Closes its stdout and stderr (the pipes see EOF), then keeps running and exits 3: the
# stage ends when the process exits, with its code.
echo before-close
exec >&- 2>&-
sleep 1
exit 3
