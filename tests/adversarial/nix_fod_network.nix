# A fixed-output derivation: Nix gives its builder the host's network even with the build
# sandbox on. The builder connects to a listener the test opened on the host's 127.0.0.1
# (@PORT@) and sends a marker; building a cutor.nix must not reach any network.
{ pkgs ? import <nixpkgs> {} }:
let
  fod = derivation {
    name = "cutor-adv-fod-@NONCE@"; # a fresh output path each time: FOD paths ignore other attributes
    system = builtins.currentSystem;
    builder = "/bin/sh";
    outputHashMode = "flat";
    outputHashAlgo = "sha256";
    outputHash = "2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881"; # "x"
    nonce = "@NONCE@";
    args = [ "-c" "/usr/bin/python3 -c 'import socket; socket.create_connection((\"127.0.0.1\", @PORT@), 3).sendall(b\"LEAK from a Nix build\")'; printf x > $out" ];
  };
in pkgs.mkShell { buildInputs = [ fod ]; }
