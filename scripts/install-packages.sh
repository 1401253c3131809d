#!/usr/bin/env bash
# Installs the Debian packages named on the command line that are not installed yet
# (as root, with apt-get); does nothing when all are there. Used by setup.sh and fuzz.sh.
# Usage: scripts/install-packages.sh WHO PACKAGE...   (WHO prefixes the messages)
set -euo pipefail
who=$1
shift
missing=()
for p in "$@"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
((${#missing[@]})) || exit 0
if [[ $(id -u) -ne 0 ]]; then
  echo "$who: missing packages: ${missing[*]} (run as root to install them)" >&2
  exit 1
fi
echo "$who: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
