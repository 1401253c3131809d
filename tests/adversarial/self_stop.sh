# Stops itself (SIGSTOP to its own process group): a stopped stage must still end at the
# wall limit and be killed.
echo stopping
kill -STOP 0
echo resumed
