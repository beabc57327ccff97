#!/usr/bin/env bash
# Interop test: ws2api + the PHP example backend + a Python `websockets` client.
#
#   tests/interop/run.sh                      # uses target/release/ws2api
#   WS2API_BIN=/path/to/ws2api tests/interop/run.sh
#
# Needs: php (php-cli), setsid (util-linux), python3 with the `websockets` package, a built ws2api.
# Starts both servers on free ports, waits until they accept TCP connections,
# runs interop.py, stops only what it started, exits with interop.py's status.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"

WS2API_BIN="${WS2API_BIN:-target/release/ws2api}"
PHP="${PHP:-php}"
PYTHON="${PYTHON:-python3}"

[ -x "$WS2API_BIN" ] || { echo "run.sh: gateway binary not found: $WS2API_BIN (cargo build --release?)" >&2; exit 2; }
command -v "$PHP" >/dev/null || { echo "run.sh: php not found (apt-get install php-cli)" >&2; exit 2; }
"$PYTHON" -c 'import websockets' 2>/dev/null || { echo "run.sh: python3 module websockets missing (python3 -m pip install websockets)" >&2; exit 2; }

WORK="$(mktemp -d "${TMPDIR:-/tmp}/ws2api-interop.XXXXXX")"
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

# A free TCP port: bind port 0 and let the kernel choose. (Tiny race until the
# server binds it again; fine on a test machine.)
free_port() {
    "$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close(); print(port)'
}

# Wait until 127.0.0.1:$1 accepts a TCP connection: probe every 0.1 s, at most 10 s.
# Fails early if the process ($2) has already exited.
wait_port() {
    local port="$1" pid="$2" name="$3" deadline=$((SECONDS + 10))
    while ((SECONDS < deadline)); do
        # bash's /dev/tcp: a connect on loopback succeeds or is refused at once.
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            return 0
        fi
        kill -0 "$pid" 2>/dev/null || { echo "run.sh: $name exited before listening on port $port" >&2; return 1; }
        sleep 0.1
    done
    echo "run.sh: $name did not listen on port $port within 10 s" >&2
    return 1
}

show_logs() {
    echo "---- ws2api stderr (last 40 lines) ----" >&2
    tail -n 40 "$WORK/ws2api.err" >&2 || true
    echo "---- php server log (last 20 lines) ----" >&2
    tail -n 20 "$WORK/php.log" >&2 || true
}

P1="$(free_port)"   # ws2api public listener
P2="$(free_port)"   # ws2api control listener
P3="$(free_port)"   # PHP backend
while [ "$P2" = "$P1" ]; do P2="$(free_port)"; done
while [ "$P3" = "$P1" ] || [ "$P3" = "$P2" ]; do P3="$(free_port)"; done

echo "run.sh: php backend on 127.0.0.1:$P3, ws2api on 127.0.0.1:$P1 (control 127.0.0.1:$P2)"

# Several PHP workers, so a push request and a gateway request can be served at once.
# setsid: a new process group whose id is the PHP server's pid (see cleanup).
WS2API_CONTROL="http://127.0.0.1:$P2/" \
WS2API_PHP_LOG="$WORK/disconnects.log" \
PHP_CLI_SERVER_WORKERS=4 \
    setsid "$PHP" -S "127.0.0.1:$P3" examples/php/index.php >"$WORK/php.log" 2>&1 &
PHP_PID=$!
PIDS+=("$PHP_PID")
PHP_PGID=$PHP_PID

"$WS2API_BIN" \
    --listen "127.0.0.1:$P1" \
    --control-listen "127.0.0.1:$P2" \
    --api-url "http://127.0.0.1:$P3/" \
    --shards 2 \
    >"$WORK/ws2api.out" 2>"$WORK/ws2api.err" &
GW_PID=$!
PIDS+=("$GW_PID")

if ! wait_port "$P3" "$PHP_PID" "php" || ! wait_port "$P1" "$GW_PID" "ws2api" || ! wait_port "$P2" "$GW_PID" "ws2api control"; then
    show_logs
    exit 1
fi

status=0
"$PYTHON" tests/interop/interop.py --gateway "ws://127.0.0.1:$P1" --php "http://127.0.0.1:$P3" || status=$?

if [ "$status" -ne 0 ]; then
    show_logs
fi
exit "$status"
