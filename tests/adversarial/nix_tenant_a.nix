# Tenant A: an environment carrying a value of its own (an API key, say) in its shell
# variables. Nix writes it into the derivations of the environment in /nix/store.
{ pkgs ? import <nixpkgs> {} }:
pkgs.mkShell { API_KEY = "@KEY@"; }
