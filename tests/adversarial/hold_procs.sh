# Holds $1 sleeping processes for a while (the process budget of its uid), then exits.
i=0
while [ $i -lt "$1" ]; do sleep 20 & i=$((i + 1)); done
echo "holding $i uid $(id -u)"
sleep 10
kill $(jobs -p) 2>/dev/null
