# Shared helpers for the demo and test scripts: find or install the local
# nodes paywatch is tested against.

# Installs Debian package $1 (as root, or with sudo); $2 names the variable
# that can point at the binary instead.
apt_install() {
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq >&2 && $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$1" >&2 || {
        echo "could not install $1; install it (apt-get install $1)${2:+ or set $2}" >&2
        return 1
    }
}

# Prints $1 (a path the caller was given, maybe empty) or else $2 when
# executable; otherwise installs Debian's package $3 ($4 names the variable
# that can point at the binary instead) and prints $2.
find_or_install() {
    for candidate in "$1" "$2"; do
        if [ -n "$candidate" ] && [ -x "$candidate" ]; then
            echo "$candidate"
            return 0
        fi
    done
    echo "$(basename "$2") not found; installing Debian's $3 package" >&2
    apt_install "$3" "$4" || return 1
    echo "$2"
}

# Prints the path of a litecoind binary, installing Debian's package if none.
ensure_litecoind() { find_or_install "${LITECOIND:-}" /usr/lib/litecoin/litecoind litecoind LITECOIND; }

# Prints the directory of PostgreSQL's server binaries (initdb, postgres),
# installing Debian's postgresql package if none is found. The tests start
# their own server from it, as an unprivileged user.
ensure_postgres() {
    local found
    if [ -n "${POSTGRES_BIN:-}" ] && [ -x "$POSTGRES_BIN/initdb" ]; then
        echo "$POSTGRES_BIN"
        return 0
    fi
    found=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
    if [ -z "$found" ] || [ ! -x "$found/initdb" ]; then
        echo "PostgreSQL not found; installing Debian's postgresql package" >&2
        apt_install postgresql POSTGRES_BIN || return 1
        found=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
    fi
    echo "$found"
}

# Starts a throwaway PostgreSQL server for the bench scripts, durable as in
# production (fsync on): data in $WORK/pg, port $PG_PORT, run as the postgres
# user when root. Sets PG_URL_BASE (no database) and creates the database
# "paywatch". stop_postgres stops it.
start_postgres() {
    PG_BIN_DIR=$(ensure_postgres)
    PG_PORT=$(free_port)
    PG_AS=()
    mkdir -p "$WORK/pg"
    if [ "$(id -u)" -eq 0 ]; then
        chmod 755 "$WORK"; chown postgres "$WORK/pg"; PG_AS=(runuser -u postgres --)
    fi
    "${PG_AS[@]}" "$PG_BIN_DIR/initdb" -U postgres --auth=trust -E UTF8 -D "$WORK/pg/data" >/dev/null
    "${PG_AS[@]}" "$PG_BIN_DIR/pg_ctl" -D "$WORK/pg/data" -l "$WORK/pg/log" -w \
        -o "-p $PG_PORT -k $WORK/pg -c listen_addresses=127.0.0.1" start >/dev/null
    PG_URL_BASE="postgres://postgres@127.0.0.1:$PG_PORT"
    psql_run "CREATE DATABASE paywatch"
}

# Runs SQL against the bench server's maintenance database.
psql_run() { "$PG_BIN_DIR/psql" -q -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres -c "$1" >/dev/null; }

stop_postgres() {
    "${PG_AS[@]}" "$PG_BIN_DIR/pg_ctl" -D "$WORK/pg/data" -m fast -w stop >/dev/null 2>&1 || true
}

# Prints the path of promtool (the alert rules are checked with it),
# installing Debian's prometheus package if none is found. Its service is
# not started by the install in a container, and not needed.
ensure_promtool() { find_or_install "${PROMTOOL:-}" /usr/bin/promtool prometheus PROMTOOL; }

# Makes sure systemd-analyze is there (the unit's security rating is tested).
ensure_systemd_analyze() {
    command -v systemd-analyze >/dev/null 2>&1 && return 0
    echo "systemd-analyze not found; installing Debian's systemd package" >&2
    apt_install systemd
}

# Starts a Litecoin Core regtest node for the scripts: datadir $WORK/ltc,
# RPC on $RPC_PORT (user u, password p), P2P on $P2P_PORT, a wallet, and 101
# blocks mined to $MINER (the first coinbase is spendable). Needs LITECOIND.
start_litecoind() {
    mkdir -p "$WORK/ltc"
    "$LITECOIND" -regtest -datadir="$WORK/ltc" -daemon -rpcuser=u -rpcpassword=p -rpcport="$RPC_PORT" \
        -port="$P2P_PORT" -listen=0 -fallbackfee=0.0001 -txindex=0 >/dev/null
    for _ in $(seq 50); do cli getblockchaininfo >/dev/null 2>&1 && break; sleep 0.2; done
    cli createwallet w >/dev/null
    MINER=$(cli getnewaddress)
    cli generatetoaddress 101 "$MINER" >/dev/null
}

# litecoin-cli against the node start_litecoind started.
cli() { litecoin-cli -regtest -datadir="$WORK/ltc" -rpcuser=u -rpcpassword=p -rpcport="$RPC_PORT" "$@"; }

# A free TCP port on 127.0.0.1.
free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# Prints the path of an anvil binary, installing Foundry's npm package into
# .tools/ if none is found.
ensure_anvil() {
    local local_bin=".tools/node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil"
    for candidate in "${ANVIL:-}" "$local_bin"; do
        if [ -n "$candidate" ] && [ -x "$candidate" ]; then
            echo "$(cd "$(dirname "$candidate")" && pwd)/$(basename "$candidate")"
            return 0
        fi
    done
    if ! command -v npm >/dev/null 2>&1; then
        echo "npm not found: install Node.js and npm (apt-get install npm), or set ANVIL" >&2
        return 1
    fi
    echo "anvil not found; installing @foundry-rs/anvil from npm into .tools/" >&2
    npm install --silent --no-audit --no-fund --prefix .tools @foundry-rs/anvil >&2 || {
        echo "could not install anvil; set ANVIL=/path/to/anvil" >&2
        return 1
    }
    echo "$(pwd)/$local_bin"
}

# Prints the path of a Chromium binary (the checkout page's browser test),
# installing Debian's chromium package if none is found.
ensure_chromium() {
    for candidate in "${CHROMIUM:-}" /usr/bin/chromium /usr/bin/chromium-browser; do
        if [ -n "$candidate" ] && [ -x "$candidate" ]; then
            echo "$candidate"
            return 0
        fi
    done
    echo "chromium not found; installing Debian's chromium package" >&2
    apt_install chromium CHROMIUM || return 1
    echo /usr/bin/chromium
}

# Prints the path of debootstrap (the Debian package is tested in a
# throwaway root it makes), installing Debian's package if missing.
ensure_debootstrap() { find_or_install "${DEBOOTSTRAP:-}" /usr/sbin/debootstrap debootstrap DEBOOTSTRAP; }

# The cargo-deb release the package is built and tested with.
CARGO_DEB_VERSION=3.8.0

# Prints the path of cargo-deb, installing it from crates.io into .tools/
# when neither $CARGO_DEB nor .tools/ nor $PATH has one.
ensure_cargo_deb() {
    local local_bin=".tools/cargo-deb/bin/cargo-deb"
    for candidate in "${CARGO_DEB:-}" "$local_bin" "$(command -v cargo-deb 2>/dev/null || true)"; do
        if [ -n "$candidate" ] && [ -x "$candidate" ]; then
            echo "$(cd "$(dirname "$candidate")" && pwd)/$(basename "$candidate")"
            return 0
        fi
    done
    echo "cargo-deb not found; installing cargo-deb $CARGO_DEB_VERSION from crates.io into .tools/" >&2
    cargo install --quiet --locked --version "$CARGO_DEB_VERSION" --root .tools/cargo-deb cargo-deb >&2 || {
        echo "could not install cargo-deb; set CARGO_DEB=/path/to/cargo-deb" >&2
        return 1
    }
    echo "$(pwd)/$local_bin"
}
