# The host's setuid-root binaries, seen read-only and nosuid under no_new_privs: none may
# raise the box's identity.
for b in /usr/bin/su /bin/su /usr/bin/passwd /usr/bin/mount /usr/bin/newgrp /usr/bin/chsh /usr/bin/gpasswd /usr/bin/sudo /usr/lib/dbus-1.0/dbus-daemon-launch-helper; do
  [ -e "$b" ] || continue
  if [ -u "$b" ]; then echo "setuid present $b"; fi
done
echo | su -c 'id -u' root 2>/dev/null && echo "LEAK su worked"
mount -t tmpfs none /tmp 2>/dev/null && echo "LEAK mount worked"
unshare -r id -u 2>/dev/null && echo "LEAK unshare worked"
# A setuid copy made in the workspace: owned by the box user, and /box is nosuid anyway.
cp /usr/bin/id ./myid && chmod 4755 ./myid && ./myid -u
echo "uid $(id -u) euid $(id -u)"
