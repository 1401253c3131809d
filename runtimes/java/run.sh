java Main.java "$@"
