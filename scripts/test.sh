#!/usr/bin/env bash
# The whole test suite, on a fresh machine: installs the local nodes the
# end-to-end tests need (litecoind from Debian's packages, anvil from npm) if
# missing, Chromium for the checkout page's browser test, PostgreSQL (the
# tests start their own servers from it), promtool (the alert rules),
# cargo-deb and debootstrap (the Debian package is installed in a throwaway
# root), then runs formatting and lint checks and every test of the
# workspace; then the store's tests and each chain's lifecycle tests again,
# on PostgreSQL.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

LITECOIND=$(ensure_litecoind)
ANVIL=$(ensure_anvil)
CHROMIUM=$(ensure_chromium)
POSTGRES_BIN=$(ensure_postgres)
PROMTOOL=$(ensure_promtool)
CARGO_DEB=$(ensure_cargo_deb)
DEBOOTSTRAP=$(ensure_debootstrap)
ensure_systemd_analyze
export LITECOIND ANVIL CHROMIUM POSTGRES_BIN PROMTOOL CARGO_DEB DEBOOTSTRAP
# A one-off build gains nothing from incremental artifacts, which would
# double what the build writes to disk.
export CARGO_INCREMENTAL=0
echo "==> litecoind: $LITECOIND"
echo "==> anvil: $ANVIL"
echo "==> chromium: $CHROMIUM"
echo "==> postgres: $POSTGRES_BIN"
echo "==> promtool: $PROMTOOL"
echo "==> cargo-deb: $CARGO_DEB"
echo "==> debootstrap: $DEBOOTSTRAP"

echo "==> cargo fmt --check"
cargo fmt --all -- --check

echo "==> cargo clippy"
cargo clippy --workspace --all-targets --quiet -- -D warnings

echo "==> cargo test"
cargo test --workspace --all-targets

echo "==> the store's tests and the lifecycle tests again, on PostgreSQL"
# --workspace, as above: the same features, so nothing is built again.
PAYWATCH_TEST_STORE=postgres cargo test --workspace --lib store::
PAYWATCH_TEST_STORE=postgres cargo test --workspace --test ltc_regtest --test accounts --test evm_anvil \
    --test xrp_rippled --test tron_http
