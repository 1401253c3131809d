exec java Main.java "$@"
