#!/usr/bin/env bash
# API and resource figures: durable creates per second and latency, reads per
# second, idle CPU and RSS, RSS with many pending intents, and detection
# latency (broadcast to intent.detected, poll_interval 1s), and a backup of
# the filled store while creates go on, on a local Litecoin regtest node. Prints the figures; BENCHMARKS.md records them.
# STORE=postgres runs paywatch on a local PostgreSQL server instead of the
# embedded store.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
PENDING=${PENDING:-100000}
STORE=${STORE:-redb}
LITECOIND=$(ensure_litecoind)
cargo build --quiet --release --bin paywatch --example load
PAYWATCH=$(pwd)/target/release/paywatch
LOAD=$(pwd)/target/release/examples/load

WORK=$(mktemp -d)
RPC_PORT=$(free_port); P2P_PORT=$(free_port); API_PORT=$(free_port)
cleanup() {
    [ -n "${PW_PID:-}" ] && kill "$PW_PID" 2>/dev/null || true
    cli stop >/dev/null 2>&1 || true
    [ "$STORE" = postgres ] && stop_postgres
    sleep 1; rm -rf "$WORK"
}
trap cleanup EXIT
start_litecoind
STORE_LINE=""
if [ "$STORE" = postgres ]; then
    start_postgres
    STORE_LINE="store = \"$PG_URL_BASE/paywatch\""
fi
SHOP=$(cli getnewaddress "" bech32)
TOKEN=bench-token
printf '%s' "$TOKEN" > "$WORK/token"; printf 'p' > "$WORK/pw"
cat > "$WORK/paywatch.toml" <<TOML
$STORE_LINE
state_dir = "$WORK/state"
[api]
listen = "127.0.0.1:$API_PORT"
token_file = "$WORK/token"
[log]
level = "warn"
[assets.LTC]
backend = "core-rpc"
url = "http://127.0.0.1:$RPC_PORT"
rpc_user = "u"
rpc_password_file = "$WORK/pw"
network = "regtest"
match = "amount"
addresses = ["$SHOP"]
poll_interval = "1s"
[rates]
[[rates.source]]
provider = "fixed"
rates = { "LTC/USD" = "1" }
TOML
$PAYWATCH run --config "$WORK/paywatch.toml" > "$WORK/pw.log" 2>&1 & PW_PID=$!
URL="http://127.0.0.1:$API_PORT"
for _ in $(seq 100); do curl -fs "$URL/readyz" >/dev/null 2>&1 && break; sleep 0.1; done

rss_kb() { awk '/VmRSS/ {print $2}' "/proc/$PW_PID/status"; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$PW_PID/stat"; }

echo "==> idle (10 s, one LTC asset polled every 1 s)"
T0=$(cpu_ticks); sleep 10; T1=$(cpu_ticks)
HZ=$(getconf CLK_TCK)
python3 -c "print(f'idle CPU: {($T1 - $T0) / $HZ / 10 * 100:.2f} % of one core; idle RSS: {$(rss_kb) / 1024:.1f} MiB')"

cd "$WORK"
echo "==> durable creates"
$LOAD "$URL" "$TOKEN" create 1 500
$LOAD "$URL" "$TOKEN" create 32 5000
echo "==> durable creates priced in fiat (a rate from the cache)"
$LOAD "$URL" "$TOKEN" create-fiat 32 5000
ID=$(cat last-intent-id)
echo "==> reads"
$LOAD "$URL" "$TOKEN" status 32 20000
$LOAD "$URL" "$TOKEN" "intent:$ID" 32 20000

echo "==> detection latency: broadcast to intent.detected, 10 payments"
python3 - "$URL" "$TOKEN" "$RPC_PORT" "$WORK/ltc" <<'PY'
import json, subprocess, sys, time, urllib.request
url, token, port, datadir = sys.argv[1:5]
def api(path, body=None):
    req = urllib.request.Request(url + path, data=json.dumps(body).encode() if body else None,
                                 headers={"Authorization": "Bearer " + token, "Content-Type": "application/json"})
    return json.loads(urllib.request.urlopen(req, timeout=70).read())
def cli(*args):
    return subprocess.check_output(["litecoin-cli", "-regtest", f"-datadir={datadir}", "-rpcuser=u", "-rpcpassword=p", f"-rpcport={port}", *args]).decode().strip()
last = api("/v1/events?after=0&limit=1000")["last_seq"]
while True:
    page = api(f"/v1/events?after={last}&limit=1000")
    if not page["events"]: break
    last = page["last_seq"]
lat = []
for i in range(10):
    intent = api("/v1/intents", {"asset": "LTC", "amount": f"0.{i + 1:02d}123456"})
    t0 = time.monotonic()
    cli("sendtoaddress", intent["address"], intent["pay_amount"])
    while True:
        page = api(f"/v1/events?after={last}&limit=100&wait=30")
        last = page["last_seq"]
        if any(e["type"] == "intent.detected" and e["intent"]["id"] == intent["id"] for e in page["events"]):
            lat.append(time.monotonic() - t0); break
    time.sleep(0.37 * (i % 3))  # spread the broadcasts over the poll phase
lat.sort()
print(f"detection latency over {len(lat)} payments: median {lat[len(lat)//2]:.2f} s, max {lat[-1]:.2f} s (poll_interval 1 s)")
PY

echo "==> RSS with $PENDING pending intents"
DONE=$(python3 -c "import json,urllib.request; r=urllib.request.Request('$URL/v1/status', headers={'Authorization':'Bearer $TOKEN'}); print(json.loads(urllib.request.urlopen(r).read())['intents']['awaiting'])")
if [ "$DONE" -lt "$PENDING" ]; then $LOAD "$URL" "$TOKEN" create 32 $((PENDING - DONE)); fi
sleep 5
if [ "$STORE" = postgres ]; then
    SIZE=$("$PG_BIN_DIR/psql" -h 127.0.0.1 -p "$PG_PORT" -U postgres -d paywatch -Atc "SELECT pg_database_size('paywatch')")
else
    SIZE=$(stat -c %s "$WORK/state/paywatch.redb")
fi
python3 -c "print(f'RSS with $PENDING pending intents: {$(rss_kb) / 1024:.1f} MiB; store ($STORE): {$SIZE / 1048576:.0f} MiB')"
T0=$(cpu_ticks); sleep 10; T1=$(cpu_ticks)
python3 -c "print(f'CPU with $PENDING pending intents, idle chain: {($T1 - $T0) / $HZ / 10 * 100:.2f} % of one core')"

echo "==> a backup of that store while creates go on (paywatch backup, through the API)"
$LOAD "$URL" "$TOKEN" create 32 20000 > "$WORK/creates-during-backup" & LOAD_PID=$!
B0=$(date +%s.%N)
$PAYWATCH backup --config "$WORK/paywatch.toml" --to "$WORK/backup.redb" >/dev/null
B1=$(date +%s.%N)
wait "$LOAD_PID"
python3 -c "print(f'backup with $PENDING pending intents: {$B1 - $B0:.1f} s, {$(stat -c %s "$WORK/backup.redb") / 1048576:.0f} MiB')"
echo "creates meanwhile: $(cat "$WORK/creates-during-backup")"
