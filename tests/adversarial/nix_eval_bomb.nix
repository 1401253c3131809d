# A memory bomb in the evaluator, which runs on the host: 20 million list elements (about a
# gigabyte) against a 128 MiB environment memory limit.
{ pkgs ? import <nixpkgs> {} }:
pkgs.mkShell {
  N = toString (builtins.foldl' (a: b: a + b) 0 (builtins.genList (x: x * 2) 20000000));
  nonce = "@NONCE@";
}
