# The classic shell fork bomb, then proof the script itself still runs to its end.
bomb() { bomb | bomb & }
bomb
sleep 2
echo survived
