# Leaves a background process holding the stage's stdout and stderr open and exits at once:
# the stage ends when the script exits, not when the pipes reach EOF.
sleep 300 &
echo main-done
