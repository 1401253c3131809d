exec bash ./run "$@"
