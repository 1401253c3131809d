# Tenant B: any other environment; its box gets a read-only /nix/store.
{ pkgs ? import <nixpkgs> {} }:
pkgs.mkShell { nonce = "@NONCE@"; }
