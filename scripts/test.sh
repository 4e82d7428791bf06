#!/usr/bin/env bash
# The whole test suite, on a fresh machine: installs the local nodes the
# end-to-end tests need (litecoind from Debian's packages, anvil from npm) if
# missing, and Chromium for the checkout page's browser test, then
# runs formatting and lint checks and every test of the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

LITECOIND=$(ensure_litecoind)
ANVIL=$(ensure_anvil)
CHROMIUM=$(ensure_chromium)
ensure_systemd_analyze
export LITECOIND ANVIL CHROMIUM
# A one-off build gains nothing from incremental artifacts, which would
# double what the build writes to disk.
export CARGO_INCREMENTAL=0
echo "==> litecoind: $LITECOIND"
echo "==> anvil: $ANVIL"
echo "==> chromium: $CHROMIUM"

echo "==> cargo fmt --check"
cargo fmt --all -- --check

echo "==> cargo clippy"
cargo clippy --workspace --all-targets --quiet -- -D warnings

echo "==> cargo test"
cargo test --workspace --all-targets
