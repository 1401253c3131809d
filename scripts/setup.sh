#!/usr/bin/env bash
# Installs every Debian package cutor needs (only what is missing), makes Nix ready to build
# (scripts/setup-nix.sh) and builds cutor.
# Usage: scripts/setup.sh [BUILD_TYPE] [BUILD_DIR]   (default: Release build/release)
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(
  g++ cmake ninja-build pkg-config git ca-certificates
  libboost1.81-dev libboost-json1.81-dev libboost-url1.81-dev
  libsqlite3-dev sqlite3 libpq-dev postgresql libseccomp-dev libssl-dev libspdlog-dev
  libcli11-dev libgtest-dev nix-bin bubblewrap python3 python3-pytest curl iproute2 procps nodejs
  unzip zip
  clang-19 libclang-rt-19-dev
  chromium chromium-driver python3-jsonschema
)

scripts/install-packages.sh setup "${PACKAGES[@]}"
# Nix build users and nix.conf (tests/integration/test_fresh_machine.py runs this step on
# an /etc without them).
scripts/setup-nix.sh

# The playground's npm packages (web/package.json: CodeMirror, esbuild), bundled into the
# binary by the build. Debian's nodejs comes without npm (its own package).
command -v npm >/dev/null || scripts/install-packages.sh setup npm
npm install --prefix web --no-audit --no-fund --loglevel=error >/dev/null

BUILD_TYPE=${1:-Release}
BUILD_DIR=${2:-build/$(echo "$BUILD_TYPE" | tr '[:upper:]' '[:lower:]')}
cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE="$BUILD_TYPE" >/dev/null
cmake --build "$BUILD_DIR"
# The unmodified third-party clients the compat tests drive (tests/compat/package.json).
npm install --prefix tests/compat --no-audit --no-fund --loglevel=error >/dev/null
echo "setup: built $BUILD_DIR/src/cli/cutor"
