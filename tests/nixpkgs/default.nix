# A tiny, offline stand-in for nixpkgs used by cutor's tests.
#
# It has nixpkgs' interface where cutor touches it (`import <nixpkgs> {}` gives an attrset
# with `stdenv`, `mkShell` and packages), but every package is a real derivation whose
# output only links to a tool of the host (Debian 12), so nothing is downloaded. Versions
# are hard-coded to Debian 12's: restricted evaluation may not read the host.
#
# `nix print-dev-env` needs a derivation whose builder is bash and an `stdenv` attribute
# whose `setup` script it sources inside a build; `setup` here puts the `bin` of every
# build input, then of the base tools, on PATH.
{ ... }:
let
  system = builtins.currentSystem;

  # A package named pname-version whose $out/bin/<tool> are links to host binaries.
  # tools: attrset of tool name -> absolute host path.
  hostTool = { pname, version, tools }:
    derivation {
      name = "${pname}-${version}";
      inherit pname version system;
      builder = "/bin/sh";
      toolNames = builtins.attrNames tools;
      toolTargets = builtins.attrValues tools;
      args = [ "-ec" ''
        /bin/mkdir -p "$out/bin"
        set -- $toolTargets
        for name in $toolNames; do
          /bin/ln -s "$1" "$out/bin/$name"
          shift
        done
      '' ];
    };

  bash = hostTool { pname = "bash"; version = "5.2.15";
                    tools = { bash = "/bin/bash"; sh = "/bin/bash"; }; };
  coreutils = hostTool {
    pname = "coreutils"; version = "9.1";
    tools = builtins.listToAttrs (map (n: { name = n; value = "/bin/${n}"; }) [
      "basename" "cat" "chmod" "cp" "cut" "date" "dirname" "echo" "env" "false" "head"
      "id" "ln" "ls" "mkdir" "mktemp" "mv" "printf" "pwd" "readlink" "realpath" "rm"
      "rmdir" "seq" "sleep" "sort" "tail" "tee" "touch" "tr" "true" "uname" "uniq" "wc"
      "yes" ]);
  };
  gnugrep = hostTool { pname = "gnugrep"; version = "3.8"; tools = { grep = "/bin/grep"; }; };
  gnused = hostTool { pname = "gnused"; version = "4.9"; tools = { sed = "/bin/sed"; }; };
  gnumake = hostTool { pname = "gnumake"; version = "4.3"; tools = { make = "/usr/bin/make"; }; };
  # Project archives (cutor.zip, Judge0's additional_files) are unpacked by Debian's unzip.
  unzip = hostTool { pname = "unzip"; version = "6.0";
                     tools = { unzip = "/usr/bin/unzip"; zipinfo = "/usr/bin/zipinfo"; }; };
  python3 = hostTool { pname = "python3"; version = "3.11.2";
                       tools = { python3 = "/usr/bin/python3"; python = "/usr/bin/python3"; }; };
  gcc = hostTool {
    pname = "gcc"; version = "12.2.0";
    tools = { gcc = "/usr/bin/gcc"; cc = "/usr/bin/gcc"; "g++" = "/usr/bin/g++";
              "c++" = "/usr/bin/g++"; cpp = "/usr/bin/cpp"; as = "/usr/bin/as";
              ld = "/usr/bin/ld"; };
  };

  nodejs = hostTool { pname = "nodejs"; version = "20.20.2"; tools = { node = "/usr/bin/node"; }; };
  jdk = hostTool { pname = "openjdk"; version = "17.0.15";
                   tools = { java = "/usr/bin/java"; javac = "/usr/bin/javac"; }; };

  # Always on PATH, after the build inputs, like nixpkgs' stdenv initialPath.
  initialPath = [ coreutils bash gnugrep gnused ];

  stdenv = derivation {
    name = "stdenv-cutor-test";
    inherit system initialPath;
    builder = "/bin/sh";
    setup = ''
      # Sourced by get-env.sh inside the print-dev-env build.
      PATH=
      for __p in $buildInputs $nativeBuildInputs $propagatedBuildInputs $packages \
                 @initialPath@; do
        if [ -d "$__p/bin" ]; then PATH="''${PATH:+$PATH:}$__p/bin"; fi
      done
      export PATH
      unset __p
    '';
    args = [ "-ec" ''
      /bin/mkdir -p "$out"
      printf '%s' "$setup" | /bin/sed "s|@initialPath@|$initialPath|" > "$out/setup"
    '' ];
  };

  # Like nixpkgs' mkShell: a derivation that cannot be built but can be entered.
  mkShell = { name ? "nix-shell", packages ? [ ], buildInputs ? [ ], nativeBuildInputs ? [ ], ... }@attrs:
    derivation ((builtins.removeAttrs attrs [ "packages" ]) // {
      inherit name system stdenv;
      # get-env.sh writes the environment to each output named in $outputs.
      outputs = [ "out" ];
      builder = "/bin/bash";
      args = [ "-c" "echo 'mkShell: a shell environment, not a package; use nix-shell' >&2; exit 1" ];
      nativeBuildInputs = nativeBuildInputs ++ packages;
      inherit buildInputs;
    });
in
{
  inherit system stdenv mkShell hostTool bash coreutils gnugrep gnused gnumake unzip python3 gcc nodejs
    jdk;
  python = python3;
  python311 = python3;
  gcc12 = gcc;
  lib = { version = "cutor-test"; };
}
