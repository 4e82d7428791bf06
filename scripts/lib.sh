# Shared helpers for the demo and test scripts: find or install the local
# nodes paywatch is tested against.

# Prints the path of a litecoind binary, installing Debian's package if none.
ensure_litecoind() {
    for candidate in "${LITECOIND:-}" /usr/lib/litecoin/litecoind; do
        if [ -n "$candidate" ] && [ -x "$candidate" ]; then
            echo "$candidate"
            return 0
        fi
    done
    echo "litecoind not found; installing Debian's litecoind package" >&2
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq >&2 && $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq litecoind >&2 || {
        echo "could not install litecoind; install it (apt-get install litecoind) or set LITECOIND" >&2
        return 1
    }
    echo /usr/lib/litecoin/litecoind
}

# A free TCP port on 127.0.0.1.
free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}
