#!/usr/bin/env bash
# Builds the Debian package (README, "Installing the Debian package"):
# a release build, packaged by cargo-deb (installed into .tools/ if
# missing) as described in Cargo.toml's [package.metadata.deb]. Prints the
# path of the .deb.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
CARGO_DEB=$(ensure_cargo_deb)
"$CARGO_DEB" --locked "$@"
