# Shared by the end-to-end scripts that run ws2api in front of a PHP API server
# (tests/chat/run.sh, tests/groups/run.sh): checks for the binaries, a scratch folder,
# cleanup by PID and process group on every exit path, free ports, waiting for a port.
# Source it after `cd "$ROOT"`, with WORK_NAME set (the scratch folder's name).

WS2API_BIN="${WS2API_BIN:-target/release/ws2api}"
PHP="${PHP:-php}"
PYTHON="${PYTHON:-python3}"

[ -x "$WS2API_BIN" ] || { echo "run.sh: gateway binary not found: $WS2API_BIN (cargo build --release?)" >&2; exit 2; }
command -v "$PHP" >/dev/null || { echo "run.sh: php not found (apt-get install php-cli)" >&2; exit 2; }
"$PYTHON" -c 'import websockets' 2>/dev/null || { echo "run.sh: python3 module websockets missing (python3 -m pip install websockets)" >&2; exit 2; }

WORK="$(mktemp -d "${TMPDIR:-/tmp}/ws2api-${WORK_NAME}.XXXXXX")"
PIDS=()      # processes this script started
PHP_PGID=""  # process group of the PHP server (it forks workers)

cleanup() {
    local pid
    # php -S with PHP_CLI_SERVER_WORKERS forks workers that outlive a killed parent,
    # so the PHP server runs in a process group of its own and the whole group goes.
    if [ -n "$PHP_PGID" ]; then
        kill -TERM -- "-$PHP_PGID" 2>/dev/null || true
    fi
    for pid in "${PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# A free TCP port (bind port 0, let the kernel choose), none of those in $TAKEN. It runs
# in $(...), so the caller adds the port to TAKEN. (Tiny race until the server binds it
# again; fine on a test machine.)
TAKEN=" "
free_port() {
    local port tries=0
    while ((tries < 20)); do
        tries=$((tries + 1))
        port="$("$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')"
        case "$TAKEN" in *" $port "*) continue ;; esac
        echo "$port"
        return 0
    done
    echo "run.sh: no free port found" >&2
    return 1
}

# Wait until 127.0.0.1:$1 accepts a TCP connection: probe every 0.1 s, at most 10 s.
# Fails early if the process ($2) has already exited.
wait_port() {
    local port="$1" pid="$2" name="$3" deadline=$((SECONDS + 10))
    while ((SECONDS < deadline)); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            return 0
        fi
        kill -0 "$pid" 2>/dev/null || { echo "run.sh: $name exited before listening on port $port" >&2; return 1; }
        sleep 0.1
    done
    echo "run.sh: $name did not listen on port $port within 10 s" >&2
    return 1
}

