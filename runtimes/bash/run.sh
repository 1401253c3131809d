bash main.sh "$@"
