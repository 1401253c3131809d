# A file past the file size limit: the writer is the stage's process itself (exec), so
# SIGXFSZ ends the stage.
exec head -c 2000000 /dev/zero > big
