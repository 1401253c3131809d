exec bash main.sh "$@"
