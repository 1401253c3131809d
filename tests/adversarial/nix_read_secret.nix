# Evaluation on the host reading a host secret by path: restricted evaluation must refuse.
{ ... }:
let secret = builtins.readFile @SECRET@;
in derivation { name = "leak-${secret}"; system = builtins.currentSystem; builder = "/bin/sh"; }
