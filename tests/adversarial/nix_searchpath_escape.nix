# Climbing out of an allowed search path entry with "..": still outside the allowed paths.
{ ... }:
derivation {
  name = "leak";
  system = builtins.currentSystem;
  builder = "/bin/sh";
  secret = builtins.readFile <nixpkgs/../../../../../../../..@SECRET@>;
}
