# Importing a host file as Nix code, and copying a host file into the store as a path.
{ ... }:
derivation {
  name = "leak";
  system = builtins.currentSystem;
  builder = "/bin/sh";
  copied = @ETC_CANARY@;
  imported = import @ETC_CANARY@;
}
