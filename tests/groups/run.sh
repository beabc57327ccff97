#!/usr/bin/env bash
# Groups test: two real ws2api gateways (--shards 2) in front of a PHP API server
# (tests/groups/api.php), driven by real WebSocket clients (tests/groups/groups_test.py).
#
#   tests/groups/run.sh                      # uses target/release/ws2api
#   WS2API_BIN=/path/to/ws2api tests/groups/run.sh
#
# The main gateway runs with the default limits; the "limits" gateway with a small
# --max-outbound-bytes, --max-groups-per-client and --max-message-size, for the checks
# of full queues, the group cap and oversized bodies. Needs: php (php-cli), setsid
# (util-linux), python3 with `websockets`, a built ws2api. Starts everything on free
# ports, waits until each accepts TCP connections, stops only what it started (by PID,
# on every exit path), exits with groups_test.py's status.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"

WORK_NAME=groups
# shellcheck source=../lib/php-servers.sh
. tests/lib/php-servers.sh

show_logs() {
    local f
    for f in main limits; do
        echo "---- ws2api ($f) stderr (last 30 lines) ----" >&2
        tail -n 30 "$WORK/ws2api-$f.err" >&2 || true
    done
    echo "---- php server log (last 20 lines) ----" >&2
    tail -n 20 "$WORK/php.log" >&2 || true
}

P_PHP="$(free_port)"; TAKEN="$TAKEN$P_PHP "
P_MAIN="$(free_port)"; TAKEN="$TAKEN$P_MAIN "
P_MAIN_CTL="$(free_port)"; TAKEN="$TAKEN$P_MAIN_CTL "
P_LIM="$(free_port)"; TAKEN="$TAKEN$P_LIM "
P_LIM_CTL="$(free_port)"; TAKEN="$TAKEN$P_LIM_CTL "

LOG="$WORK/disconnects.jsonl"
: >"$LOG"

echo "run.sh: php on 127.0.0.1:$P_PHP; ws2api main on $P_MAIN (control $P_MAIN_CTL); limits on $P_LIM (control $P_LIM_CTL)"

WS2API_GROUPS_LOG="$LOG" PHP_CLI_SERVER_WORKERS=4 \
    setsid "$PHP" -S "127.0.0.1:$P_PHP" tests/groups/api.php >"$WORK/php.log" 2>&1 &
PHP_PID=$!
PIDS+=("$PHP_PID")
PHP_PGID=$PHP_PID

"$WS2API_BIN" \
    --listen "127.0.0.1:$P_MAIN" \
    --control-listen "127.0.0.1:$P_MAIN_CTL" \
    --api-url "http://127.0.0.1:$P_PHP/" \
    --shards 2 \
    >"$WORK/ws2api-main.out" 2>"$WORK/ws2api-main.err" &
MAIN_PID=$!
PIDS+=("$MAIN_PID")

"$WS2API_BIN" \
    --listen "127.0.0.1:$P_LIM" \
    --control-listen "127.0.0.1:$P_LIM_CTL" \
    --api-url "http://127.0.0.1:$P_PHP/" \
    --shards 2 \
    --max-outbound-bytes 4KiB \
    --max-groups-per-client 3 \
    --max-message-size 64KiB \
    >"$WORK/ws2api-limits.out" 2>"$WORK/ws2api-limits.err" &
LIM_PID=$!
PIDS+=("$LIM_PID")

if ! wait_port "$P_PHP" "$PHP_PID" "php" \
    || ! wait_port "$P_MAIN" "$MAIN_PID" "ws2api (main)" \
    || ! wait_port "$P_MAIN_CTL" "$MAIN_PID" "ws2api (main) control" \
    || ! wait_port "$P_LIM" "$LIM_PID" "ws2api (limits)" \
    || ! wait_port "$P_LIM_CTL" "$LIM_PID" "ws2api (limits) control"; then
    show_logs
    exit 1
fi

status=0
"$PYTHON" tests/groups/groups_test.py \
    --gateway "ws://127.0.0.1:$P_MAIN" --control "http://127.0.0.1:$P_MAIN_CTL" \
    --limits-gateway "ws://127.0.0.1:$P_LIM" --limits-control "http://127.0.0.1:$P_LIM_CTL" \
    --limits-outbound 4096 --limits-groups 3 --limits-message-size 65536 \
    --shards 2 --disconnect-log "$LOG" || status=$?

if [ "$status" -ne 0 ]; then
    show_logs
fi
exit "$status"
