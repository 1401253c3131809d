# Listing host directories from the evaluator (the data dir, /root): names would leak.
{ ... }:
derivation {
  name = "leak";
  system = builtins.currentSystem;
  builder = "/bin/sh";
  listing = builtins.toJSON [ (builtins.readDir @DIR@) (builtins.readDir /root) ];
}
