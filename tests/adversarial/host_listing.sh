# Lists host directories the box must not see; each argument is a host path. Prints what it
# could list (nothing of the host may appear) and what /proc tells about the host.
for d in "$@" /root /home /var /srv /work /run /mnt /opt /sys /var/lib /etc/ssh /root/.ssh; do
  if out=$(ls -A "$d" 2>/dev/null); then echo "listed $d: $(echo $out | tr '\n' ' ')"; else echo "unlistable $d"; fi
done
for f in /etc/shadow /etc/gshadow /etc/sudoers /etc/machine-id /root/.bash_history; do
  if cat "$f" >/dev/null 2>&1; then echo "LEAK read $f"; else echo "denied $f"; fi
done
