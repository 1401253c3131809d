# Ignores a large stdin and writes 2 MB to stdout: the host must feed stdin and drain stdout
# at once, or both sides block until the wall limit.
head -c 2000000 /dev/zero | tr '\0' a
