# Closes stdin at once while the host still has megabytes of it to write: the host's writes
# fail with EPIPE (SIGPIPE, were it not ignored), which must not hurt the server.
exec 0<&-
echo closed
