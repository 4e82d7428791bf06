#!/usr/bin/env bash
# Catch-up benchmark: paywatch's time to scan and apply N regtest blocks
# (default 300), divided by the time a plain loop needs just to fetch the same
# raw blocks from the node. Target: at most 1.2. Prints the figures.
# STORE=postgres runs paywatch on a local PostgreSQL server instead of the
# embedded store.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
BLOCKS=${BLOCKS:-300}
RUNS=${RUNS:-3}
STORE=${STORE:-redb}
LITECOIND=$(ensure_litecoind)
cargo build --quiet --release --bin paywatch
cargo build --quiet --release -p paywatch-chains --example fetch_blocks
PAYWATCH=target/release/paywatch
FETCH=target/release/examples/fetch_blocks

WORK=$(mktemp -d)
RPC_PORT=$(free_port); P2P_PORT=$(free_port); API_PORT=$(free_port)
cleanup() {
    [ -n "${PW_PID:-}" ] && kill "$PW_PID" 2>/dev/null || true
    cli stop >/dev/null 2>&1 || true
    [ "$STORE" = postgres ] && stop_postgres
    sleep 1; rm -rf "$WORK"
}
trap cleanup EXIT
# 101 + 300 blocks stays below MWEB activation (432), which would need a peg-in.
start_litecoind
STORE_LINE=""
if [ "$STORE" = postgres ]; then
    start_postgres
    STORE_LINE="store = \"$PG_URL_BASE/run\""
    psql_run "ALTER DATABASE paywatch RENAME TO run"
fi
WATCHED=$(cli getnewaddress "" bech32)
printf 'p' > "$WORK/pw"
cat > "$WORK/paywatch.toml" <<TOML
$STORE_LINE
state_dir = "$WORK/state"
[api]
listen = "127.0.0.1:$API_PORT"
token_file = "$WORK/pw"
[assets.LTC]
backend = "core-rpc"
url = "http://127.0.0.1:$RPC_PORT"
rpc_user = "u"
rpc_password_file = "$WORK/pw"
network = "regtest"
addresses = ["$WATCHED"]
poll_interval = "1s"
max_blocks_per_poll = 100
TOML
# First start: paywatch's cursor is set at the current tip.
$PAYWATCH run --config "$WORK/paywatch.toml" > "$WORK/pw.log" 2>&1 & PW_PID=$!
for _ in $(seq 100); do curl -fs "http://127.0.0.1:$API_PORT/readyz" >/dev/null 2>&1 && break; sleep 0.1; done
kill "$PW_PID"; wait "$PW_PID" || true; PW_PID=
START=$(cli getblockcount)
mkdir -p "$WORK/state"   # (empty with a PostgreSQL store)
cp -r "$WORK/state" "$WORK/state-behind"
[ "$STORE" = postgres ] && psql_run "CREATE DATABASE behind TEMPLATE run"

echo "==> mining $BLOCKS blocks with ~100 outputs each (a few pay the watched address)"
mapfile -t RECIPIENTS < <(for _ in $(seq 100); do cli getnewaddress "" bech32; done)
for i in $(seq "$BLOCKS"); do
    AMOUNTS=$(printf '"%s":0.001,' "${RECIPIENTS[@]}")
    cli sendmany "" "{${AMOUNTS%,}}" >/dev/null
    [ $((i % 50)) -eq 0 ] && cli sendtoaddress "$WATCHED" 0.01 >/dev/null
    cli generatetoaddress 1 "$MINER" >/dev/null
done
TIP=$(cli getblockcount)
echo "    blocks $((START + 1))..$TIP"

best() { sort -n | head -1; }
echo "==> baseline: fetch the raw blocks, $RUNS runs"
BASE=$(for _ in $(seq "$RUNS"); do $FETCH "http://127.0.0.1:$RPC_PORT" u p $((START + 1)) "$TIP" | cut -d' ' -f1; done | best)

echo "==> paywatch: start behind by $BLOCKS blocks, time until scanned == tip, $RUNS runs"
measure() {
    rm -rf "$WORK/state"; cp -r "$WORK/state-behind" "$WORK/state"
    if [ "$STORE" = postgres ]; then
        psql_run "DROP DATABASE run" && psql_run "CREATE DATABASE run TEMPLATE behind"
    fi
    python3 - "$PAYWATCH" "$WORK/paywatch.toml" "$API_PORT" "$TIP" <<'PY'
import http.client, json, subprocess, sys, time
exe, config, port, tip = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
token = open(config.replace("paywatch.toml", "pw")).read().strip()
t0 = time.monotonic()
p = subprocess.Popen([exe, "run", "--config", config], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
try:
    while True:
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            c.request("GET", "/v1/status", headers={"Authorization": f"Bearer {token}"})
            s = json.loads(c.getresponse().read())
            if s["assets"]["LTC"]["scanned_height"] == tip:
                break
        except (OSError, ValueError, KeyError):
            pass
        if time.monotonic() - t0 > 120:
            sys.exit("paywatch did not catch up within 120 s")
        time.sleep(0.002)
    print(f"{time.monotonic() - t0:.4f}")
finally:
    p.terminate(); p.wait()
PY
}
PW=$(for _ in $(seq "$RUNS"); do measure; done | best)
python3 -c "
base, pw, n = $BASE, $PW, $BLOCKS
print(f'blocks: {n}')
print(f'plain fetch loop: {base:.3f} s ({n / base:.0f} blocks/s)')
print(f'paywatch catch-up (process start to scanned == tip): {pw:.3f} s ({n / pw:.0f} blocks/s)')
print(f'catch-up ratio: {pw / base:.2f} (target <= 1.2)')
"
