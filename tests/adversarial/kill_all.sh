# kill -9 -1 from inside: every process the box user may signal. Its own children die;
# the host, the server and other boxes must not even be reachable. Then PID 1 (box init).
sleep 100 &
child=$!
kill -9 -1
wait $child
echo "child ended with $?"
kill -9 1 2>/dev/null && echo "LEAK killed init" || echo "init refused SIGKILL"
kill -STOP 1 2>/dev/null && echo "LEAK stopped init" || echo "init refused SIGSTOP"
echo "still alive"
