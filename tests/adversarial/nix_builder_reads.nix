# A build input whose builder copies host files (a secret, an /etc canary, the server's data
# dir) into its output; the run stage then prints that output. Nix's build sandbox must not
# show the host's files to the builder.
{ pkgs ? import <nixpkgs> {} }:
let
  leak = derivation {
    name = "cutor-adv-leak";
    system = builtins.currentSystem;
    builder = "/bin/sh";
    nonce = "@NONCE@";
    args = [ "-c" "for f in @SECRET@ @ETC_CANARY@ @DATA_DIR@/cutor.db; do /bin/cat $f; done > $out 2>&1; echo built >> $out" ];
  };
in pkgs.mkShell { buildInputs = [ leak ]; LEAK = "${leak}"; }
