#!/usr/bin/env bash
# paywatch end to end on a local Litecoin regtest node: start litecoind,
# start paywatch, create an intent, pay it, mine, and show the
# intent.detected and intent.confirmed events.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

LITECOIND=$(ensure_litecoind)
echo "==> building paywatch"
cargo build --quiet --bin paywatch
PAYWATCH=target/debug/paywatch

WORK=$(mktemp -d)
RPC_PORT=$(free_port); P2P_PORT=$(free_port); API_PORT=$(free_port)
cleanup() {
    [ -n "${PW_PID:-}" ] && kill "$PW_PID" 2>/dev/null && wait "$PW_PID" 2>/dev/null || true
    cli stop >/dev/null 2>&1 || true
    sleep 1
    rm -rf "$WORK"
}
trap cleanup EXIT

echo "==> starting litecoind regtest (rpc port $RPC_PORT)"
start_litecoind
SHOP_ADDR=$(cli getnewaddress "" bech32)
echo "    merchant receive address: $SHOP_ADDR"

printf 'p' > "$WORK/rpc-password"
cat > "$WORK/paywatch.toml" <<TOML
state_dir = "$WORK/state"

[api]
listen = "127.0.0.1:$API_PORT"

[assets.LTC]
backend = "core-rpc"
url = "http://127.0.0.1:$RPC_PORT"
rpc_user = "u"
rpc_password_file = "$WORK/rpc-password"
network = "regtest"
addresses = ["$SHOP_ADDR"]
confirmations = 2
poll_interval = "1s"
TOML

echo "==> starting paywatch"
$PAYWATCH run --config "$WORK/paywatch.toml" > "$WORK/paywatch.log" 2>&1 &
PW_PID=$!
for _ in $(seq 100); do curl -fs "http://127.0.0.1:$API_PORT/readyz" >/dev/null 2>&1 && break; sleep 0.1; done
curl -fs "http://127.0.0.1:$API_PORT/readyz" >/dev/null || { cat "$WORK/paywatch.log"; exit 1; }
pw() { $PAYWATCH "$@" --config "$WORK/paywatch.toml"; }

echo "==> creating an intent for 0.5 LTC"
INTENT=$(pw intent create --asset LTC --amount 0.5 --external-id demo-order-1)
echo "$INTENT"
ID=$(echo "$INTENT" | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')

echo "==> the customer pays 0.5 LTC"
TXID=$(cli sendtoaddress "$SHOP_ADDR" 0.5)
echo "    txid $TXID"

wait_status() {
    for _ in $(seq 100); do
        pw intent show "$ID" | grep -q "\"status\": \"$1\"" && return 0
        sleep 0.2
    done
    echo "intent never reached $1"; cat "$WORK/paywatch.log"; exit 1
}
wait_status detected
echo "==> detected in the mempool; mining 2 blocks"
cli generatetoaddress 2 "$MINER" >/dev/null
wait_status confirmed

echo "==> the event feed:"
pw events
echo "==> paywatch confirmed $ID end to end."
