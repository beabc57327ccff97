#!/usr/bin/env bash
# Chat test: the PHP chat example (examples/php/chat.php) behind a real ws2api
# (--shards 2), driven by three real WebSocket users (tests/chat/chat_test.py).
#
#   tests/chat/run.sh                        # uses target/release/ws2api
#   WS2API_BIN=/path/to/ws2api tests/chat/run.sh
#
# Needs: php (php-cli), setsid (util-linux), python3 with `websockets`, a built ws2api.
# Starts both servers on free ports, waits until each accepts TCP connections, stops
# only what it started (by PID, on every exit path), exits with chat_test.py's status.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"

WS2API_BIN="${WS2API_BIN:-target/release/ws2api}"
PHP="${PHP:-php}"
PYTHON="${PYTHON:-python3}"

[ -x "$WS2API_BIN" ] || { echo "run.sh: gateway binary not found: $WS2API_BIN (cargo build --release?)" >&2; exit 2; }
command -v "$PHP" >/dev/null || { echo "run.sh: php not found (apt-get install php-cli)" >&2; exit 2; }
"$PYTHON" -c 'import websockets' 2>/dev/null || { echo "run.sh: python3 module websockets missing (python3 -m pip install websockets)" >&2; exit 2; }

WORK="$(mktemp -d "${TMPDIR:-/tmp}/ws2api-chat.XXXXXX")"
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

show_logs() {
    echo "---- ws2api stderr (last 30 lines) ----" >&2
    tail -n 30 "$WORK/ws2api.err" >&2 || true
    echo "---- php server log (last 20 lines) ----" >&2
    tail -n 20 "$WORK/php.log" >&2 || true
}

P_PHP="$(free_port)"; TAKEN="$TAKEN$P_PHP "
P_GW="$(free_port)"; TAKEN="$TAKEN$P_GW "
P_CTL="$(free_port)"; TAKEN="$TAKEN$P_CTL "

echo "run.sh: php chat on 127.0.0.1:$P_PHP; ws2api on 127.0.0.1:$P_GW (control 127.0.0.1:$P_CTL)"

# Several PHP workers: a Message's PHP request calls the control listener while other
# users' messages arrive.
WS2API_CONTROL="http://127.0.0.1:$P_CTL" PHP_CLI_SERVER_WORKERS=4 \
    setsid "$PHP" -S "127.0.0.1:$P_PHP" examples/php/chat.php >"$WORK/php.log" 2>&1 &
PHP_PID=$!
PIDS+=("$PHP_PID")
PHP_PGID=$PHP_PID

"$WS2API_BIN" \
    --listen "127.0.0.1:$P_GW" \
    --control-listen "127.0.0.1:$P_CTL" \
    --api-url "http://127.0.0.1:$P_PHP/" \
    --shards 2 \
    >"$WORK/ws2api.out" 2>"$WORK/ws2api.err" &
GW_PID=$!
PIDS+=("$GW_PID")

if ! wait_port "$P_PHP" "$PHP_PID" "php" \
    || ! wait_port "$P_GW" "$GW_PID" "ws2api" \
    || ! wait_port "$P_CTL" "$GW_PID" "ws2api control"; then
    show_logs
    exit 1
fi

status=0
"$PYTHON" tests/chat/chat_test.py \
    --gateway "ws://127.0.0.1:$P_GW" --control "http://127.0.0.1:$P_CTL" --shards 2 || status=$?

if [ "$status" -ne 0 ]; then
    show_logs
fi
exit "$status"
