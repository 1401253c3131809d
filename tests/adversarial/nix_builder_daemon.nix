# A build input whose builder leaves a daemon behind (setsid, its own session, stdio closed)
# and exits successfully: nothing a build starts may outlive it on the host.
{ pkgs ? import <nixpkgs> {} }:
let
  daemon = derivation {
    name = "cutor-adv-daemon-@NONCE@";
    system = builtins.currentSystem;
    builder = "/bin/sh";
    # The daemon is Python (the build sandbox has the host's /usr); the output records
    # that it was running when the builder exited.
    args = [ "-c" "/usr/bin/python3 -c 'import os, signal, time; os.setsid(); signal.signal(signal.SIGHUP, signal.SIG_IGN); signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(300)' @MARKER@ </dev/null >/dev/null 2>&1 & pid=$!; i=0; while [ $i -lt 20000 ]; do i=$((i + 1)); done; if kill -0 $pid; then echo daemon-running > $out; else echo daemon-failed > $out; fi" ];
  };
in pkgs.mkShell { buildInputs = [ daemon ]; DAEMON = "${daemon}"; }
