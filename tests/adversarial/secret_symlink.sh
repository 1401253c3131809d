# Plants links in the workspace that point at the host secret ($1) and reads through them:
# inside the box they resolve in the box's view, where the file does not exist.
secret=$1
ln -s "$secret" leak1 && echo "made leak1"
ln -s "/proc/1/root$secret" leak2 && echo "made leak2"
ln -s "../../../../../..$secret" leak3 && echo "made leak3"
ln "$secret" leak4 2>/dev/null && echo "LEAK hardlinked"
for l in leak1 leak2 leak3 leak4; do
  if cat "$l" 2>/dev/null; then echo "LEAK via $l"; else echo "denied $l"; fi
done
