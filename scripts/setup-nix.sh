#!/usr/bin/env bash
# Makes Nix (Debian's nix-bin: no daemon, no systemd) able to build as root, as Nix's own
# multi-user install would: the group `nixbld` with ten build users nixbld1..nixbld10 as its
# members, and /etc/nix/nix.conf (build users, Nix's build sandbox on) where there is none.
# Idempotent. A nix.conf this script did not write is never changed; one it wrote is kept.
# Debian's nix-bin makes no build users (its nix-setup-systemd does, and needs systemd), and
# without them Nix as root fails every build: "the group 'nixbld' specified in
# 'build-users-group' does not exist".
# Usage (as root): scripts/setup-nix.sh
set -euo pipefail
group=nixbld
count=10
conf=/etc/nix/nix.conf
marker="# Written by cutor's scripts/setup-nix.sh"

if [[ $(id -u) -ne 0 ]]; then
  echo "setup-nix: run as root (it adds the group $group and its build users)" >&2
  exit 1
fi

if ! getent group "$group" >/dev/null; then
  groupadd --system "$group"
  echo "setup-nix: added group $group"
fi
for i in $(seq 1 "$count"); do
  user=$group$i
  if ! getent passwd "$user" >/dev/null; then
    useradd --system --no-create-home --home-dir /var/empty --shell /usr/sbin/nologin \
      --gid "$group" --comment "Nix build user $i" "$user"
    echo "setup-nix: added build user $user"
  fi
  # Nix takes its build users from the group's member list in /etc/group, not from each
  # user's primary group.
  members=$(getent group "$group" | cut -d: -f4)
  if [[ ",$members," != *",$user,"* ]]; then
    gpasswd --add "$user" "$group" >/dev/null
  fi
done

if [[ ! -e $conf ]]; then
  mkdir -p "$(dirname "$conf")"
  cat >"$conf" <<CONF
$marker; delete it to have it written again.
build-users-group = $group
sandbox = true
CONF
  echo "setup-nix: wrote $conf"
elif ! head -n 1 "$conf" | grep -qF "$marker"; then
  echo "setup-nix: $conf is not ours; left as it is"
fi
