# compile.sh: takes every permission away from the workspace (the box user owns it), so the
# next stage cannot even enter it. That is the program's doing, not the service's failure.
chmod 000 /box
echo locked
