node main.js "$@"
