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

show_logs() { gateway_logs; }

declare -A P_PUB P_CTL GW_PID
gateway_ports
start_php WS2API_EDGE_LOG tests/edge/api.php

# The limits of each gateway; the budget numbers are also passed to the test.
BUDGET_OUTBOUND=65536   # --max-outbound-bytes 64KiB
BUDGET_TOTAL=262144     # --max-outbound-total 256KiB
# Sets FLAGS to the flags of gateway $1 (an array: no word splitting, no globbing).
limits_of() {
    case "$1" in
        origins) FLAGS=(--allowed-origins "https://app.example.com,https://*.example.org,http://localhost:8080") ;;
        ipcap) FLAGS=(--max-connections-per-ip 3 --connect-rate-per-ip 5) ;;
        connrate) FLAGS=(--connect-rate-per-ip 5) ;;
        msgrate) FLAGS=(--max-message-rate 20) ;;
        budget) FLAGS=(--max-outbound-bytes "$BUDGET_OUTBOUND" --max-outbound-total "$BUDGET_TOTAL") ;;
        table) FLAGS=(--max-tracked-ips 2 --max-connections-per-ip 10) ;;
        *) echo "run.sh: unknown gateway $1" >&2; return 1 ;;
    esac
}

start_gateways limits_of ws

run_driver tests/edge/edge_test.py \
    "${gw_args[@]}" \
    --budget-outbound "$BUDGET_OUTBOUND" --budget-total "$BUDGET_TOTAL" \
    --shards 2 --api-log "$LOG" --ws2api-bin "$WS2API_BIN"
