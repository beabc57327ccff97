#!/usr/bin/env bash
# Edge limits test (SPEC "Limits for a public edge"): six real ws2api gateways
# (--shards 2 --ping-interval 0s), each with one group of limits, in front of a PHP API
# server that logs every request (tests/edge/api.php), driven by real WebSocket and raw
# socket clients (tests/edge/edge_test.py).
#
#   tests/edge/run.sh                      # uses target/release/ws2api
#   WS2API_BIN=/path/to/ws2api tests/edge/run.sh
#
# Gateways:
#   origins   --allowed-origins "https://app.example.com,https://*.example.org,http://localhost:8080"
#   ipcap     --max-connections-per-ip 3 --connect-rate-per-ip 5
#   connrate  --connect-rate-per-ip 5
#   msgrate   --max-message-rate 20
#   budget    --max-outbound-bytes 64KiB --max-outbound-total 256KiB (128 KiB per shard)
#   table     --max-tracked-ips 2 --max-connections-per-ip 10 (room for one address per shard)
# Clients bind loopback source addresses 127.0.0.2 ... 127.0.0.13 (Linux routes all of
# 127.0.0.0/8 to lo) to stand for distinct client hosts. Needs: php (php-cli), setsid
# (util-linux), python3 with `websockets`, a built ws2api. Starts everything on free
# ports, waits until each accepts TCP connections, stops only what it started (by PID,
# on every exit path), exits with edge_test.py's status.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"

WORK_NAME=edge
# shellcheck source=../lib/php-servers.sh
. tests/lib/php-servers.sh

GATEWAYS=(origins ipcap connrate msgrate budget table)

show_logs() {
    local g
    for g in "${GATEWAYS[@]}"; do
        echo "---- ws2api ($g) stderr (last 30 lines) ----" >&2
        tail -n 30 "$WORK/ws2api-$g.err" >&2 || true
    done
    echo "---- php server log (last 20 lines) ----" >&2
    tail -n 20 "$WORK/php.log" >&2 || true
}

P_PHP="$(free_port)"; TAKEN="$TAKEN$P_PHP "
declare -A P_PUB P_CTL GW_PID
for g in "${GATEWAYS[@]}"; do
    P_PUB[$g]="$(free_port)"; TAKEN="$TAKEN${P_PUB[$g]} "
    P_CTL[$g]="$(free_port)"; TAKEN="$TAKEN${P_CTL[$g]} "
done

LOG="$WORK/api.jsonl"
: >"$LOG"

echo "run.sh: php on 127.0.0.1:$P_PHP"

WS2API_EDGE_LOG="$LOG" PHP_CLI_SERVER_WORKERS=4 \
    setsid "$PHP" -S "127.0.0.1:$P_PHP" tests/edge/api.php >"$WORK/php.log" 2>&1 &
PHP_PID=$!
PIDS+=("$PHP_PID")
PHP_PGID=$PHP_PID

# The limits of each gateway; the budget numbers are also passed to the test.
BUDGET_OUTBOUND=65536   # --max-outbound-bytes 64KiB
BUDGET_TOTAL=262144     # --max-outbound-total 256KiB
# Sets LIMITS to the flags of gateway $1 (an array: no word splitting, no globbing).
limits_of() {
    case "$1" in
        origins) LIMITS=(--allowed-origins "https://app.example.com,https://*.example.org,http://localhost:8080") ;;
        ipcap) LIMITS=(--max-connections-per-ip 3 --connect-rate-per-ip 5) ;;
        connrate) LIMITS=(--connect-rate-per-ip 5) ;;
        msgrate) LIMITS=(--max-message-rate 20) ;;
        budget) LIMITS=(--max-outbound-bytes "$BUDGET_OUTBOUND" --max-outbound-total "$BUDGET_TOTAL") ;;
        table) LIMITS=(--max-tracked-ips 2 --max-connections-per-ip 10) ;;
        *) echo "run.sh: unknown gateway $1" >&2; return 1 ;;
    esac
}

LIMITS=()
for g in "${GATEWAYS[@]}"; do
    limits_of "$g"
    echo "run.sh: ws2api $g on ${P_PUB[$g]} (control ${P_CTL[$g]}): ${LIMITS[*]}"
    "$WS2API_BIN" \
        --listen "127.0.0.1:${P_PUB[$g]}" \
        --control-listen "127.0.0.1:${P_CTL[$g]}" \
        --api-url "http://127.0.0.1:$P_PHP/" \
        --shards 2 \
        --ping-interval 0s \
        "${LIMITS[@]}" \
        >"$WORK/ws2api-$g.out" 2>"$WORK/ws2api-$g.err" &
    GW_PID[$g]=$!
    PIDS+=("${GW_PID[$g]}")
done

if ! wait_port "$P_PHP" "$PHP_PID" "php"; then
    show_logs
    exit 1
fi
for g in "${GATEWAYS[@]}"; do
    if ! wait_port "${P_PUB[$g]}" "${GW_PID[$g]}" "ws2api ($g)" \
        || ! wait_port "${P_CTL[$g]}" "${GW_PID[$g]}" "ws2api ($g) control"; then
        show_logs
        exit 1
    fi
done

gw_args=()
for g in "${GATEWAYS[@]}"; do
    gw_args+=("--$g" "ws://127.0.0.1:${P_PUB[$g]}" "--$g-control" "http://127.0.0.1:${P_CTL[$g]}")
done

# In the background and waited for, so that a signal to this script runs its traps at
# once (the cleanup stops the test too) instead of after the test has finished.
status=0
"$PYTHON" tests/edge/edge_test.py \
    "${gw_args[@]}" \
    --budget-outbound "$BUDGET_OUTBOUND" --budget-total "$BUDGET_TOTAL" \
    --shards 2 --api-log "$LOG" --ws2api-bin "$WS2API_BIN" &
TEST_PID=$!
PIDS+=("$TEST_PID")
wait "$TEST_PID" || status=$?

if [ "$status" -ne 0 ]; then
    show_logs
fi
exit "$status"
