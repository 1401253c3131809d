exec python3 main.py "$@"
