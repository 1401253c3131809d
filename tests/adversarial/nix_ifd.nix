# Import from derivation: a build run during evaluation, whose output is then evaluated as
# Nix code. Evaluation of untrusted files must not build anything.
{ ... }:
import (derivation {
  name = "cutor-adv-ifd-@NONCE@";
  system = builtins.currentSystem;
  builder = "/bin/sh";
  args = [ "-c" "echo '{ ... }: throw \"ifd ran\"' > $out" ];
})
