exec node main.js "$@"
