# Evaluation reading the server's environment (restricted evaluation still allows getEnv)
# and passing it into the box through the shell environment.
{ pkgs ? import <nixpkgs> {} }:
pkgs.mkShell {
  FROM_SERVER = builtins.getEnv "@VAR@";
  FROM_SERVER_HOME = builtins.getEnv "HOME";
  FROM_SERVER_PATH = builtins.getEnv "PATH";
  nonce = "@NONCE@";
}
