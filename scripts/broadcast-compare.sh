#!/usr/bin/env bash
# Broadcast fan-out, ws2api vs Pushpin 1.36, side by side in one run: scripts/compare.sh
# with only its workload c. N idle members in K groups, P broadcasts/s of S bytes:
# ws2api through POST /groups/<g> on its control listener, Pushpin through POST /publish/
# (channels over WebSocket-over-HTTP, the bench API subscribing each client with a GRIP
# `c:{"type":"subscribe","channel":…}` control message). Prints compare.txt: per side
# deliveries, POST → first / last delivery, gateway CPU per delivery and deliveries per
# gateway CPU-second, and their ratio (ws2api / Pushpin).
#
# Usage: scripts/broadcast-compare.sh [--bcast-connections 2000] [--broadcasts 1]
#          [--groups 1] [--broadcast-size 1KiB] [--bcast-duration 20s] [--ramp 250]
#          [any other scripts/compare.sh flag]
# Defaults keep Pushpin under its stock handler limit (message_rate 2500 messages/s,
# message_hwm 25000): 2000 members x 1 broadcast/s = 2000 deliveries/s. Results in
# results/<timestamp>-<name>/ (ws2api-c/, pushpin-c/, compare.txt).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
exec scripts/compare.sh --name broadcast-compare --ramp 250 --workloads c "$@"
