#!/usr/bin/env bash
# Demo chat test: `ws2api --demo` and its chat page (GET / on the demo API), driven in
# headless Chromium over the DevTools protocol (tests/demo-chat/drive.py).
#
#   tests/demo-chat/run.sh                    # uses target/release/ws2api
#   WS2API_BIN=/path/to/ws2api OUT_DIR=/tmp tests/demo-chat/run.sh
#
# Needs: Debian's chromium (apt-get install chromium), python3 with `websockets`, a built
# ws2api. Starts the gateway on free ports, waits for its start line on stderr (no sleeps),
# runs drive.py (screenshot of tab B: $OUT_DIR/demo-chat-B.png, default /tmp), stops only what
# it started, exits with drive.py's status.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"

WS2API_BIN="${WS2API_BIN:-target/release/ws2api}"
PYTHON="${PYTHON:-python3}"
CHROMIUM="${CHROMIUM:-/usr/bin/chromium}"
OUT_DIR="${OUT_DIR:-${TMPDIR:-/tmp}}"

[ -x "$WS2API_BIN" ] || { echo "run.sh: gateway binary not found: $WS2API_BIN (cargo build --release?)" >&2; exit 2; }
[ -x "$CHROMIUM" ] || { echo "run.sh: $CHROMIUM not found (apt-get install chromium)" >&2; exit 2; }
"$PYTHON" -c 'import websockets' 2>/dev/null || { echo "run.sh: python3 module websockets missing (python3 -m pip install websockets)" >&2; exit 2; }
mkdir -p "$OUT_DIR"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/ws2api-demo-chat.XXXXXX")"
PIDS=()  # processes this script started

cleanup() {
    local pid
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

# Free TCP ports, all different: bind port 0 and let the kernel choose. (Tiny race until
# the gateway binds them again; fine on a test machine.)
read -r P_PUBLIC P_CONTROL P_DEMO < <("$PYTHON" -c '
import socket
socks = [socket.socket() for _ in range(3)]
for s in socks: s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in socks))
for s in socks: s.close()')

# The gateway's stderr goes through a FIFO so that its start line ("demo API on ...", printed
# once every listener is bound) says when it is ready.
mkfifo "$WORK/ws2api.fifo"
"$WS2API_BIN" --demo --demo-listen "127.0.0.1:$P_DEMO" --listen "127.0.0.1:$P_PUBLIC" \
    --control-listen "127.0.0.1:$P_CONTROL" --shards 2 2>"$WORK/ws2api.fifo" &
PIDS+=("$!")
exec 3<"$WORK/ws2api.fifo"
ready=0
while IFS= read -r -t 20 line <&3; do
    printf '%s\n' "$line" >>"$WORK/ws2api.err"
    case "$line" in *"demo API on"*) ready=1; break ;; esac
done
cat <&3 >>"$WORK/ws2api.err" &
PIDS+=("$!")
exec 3<&-

show_log() {
    echo "---- ws2api stderr (last 40 lines) ----" >&2
    tail -n 40 "$WORK/ws2api.err" >&2 || true
}
if [ "$ready" != 1 ]; then
    echo "run.sh: ws2api did not start within 20 s" >&2
    show_log
    exit 1
fi

start=$SECONDS
status=0
"$PYTHON" tests/demo-chat/drive.py --page "http://127.0.0.1:$P_DEMO/" --chromium "$CHROMIUM" \
    --out "$OUT_DIR" || status=$?
if [ "$status" = 0 ]; then
    echo "run.sh: demo chat passed in $((SECONDS - start)) s"
else
    show_log
fi
exit "$status"
