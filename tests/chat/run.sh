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

WORK_NAME=chat
# shellcheck source=../lib/php-servers.sh
. tests/lib/php-servers.sh

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
