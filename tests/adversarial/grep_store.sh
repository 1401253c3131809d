# Searches every store path the box can see for tenant A's value ($1): only this
# environment's own closure should be visible.
echo "store entries: $(ls /nix/store | wc -l)"
for f in /nix/store/*.drv /nix/store/*/*; do
  if grep -q -s -- "$1" "$f"; then echo "FOUND in $f"; fi
done
echo searched
