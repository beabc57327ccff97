#!/usr/bin/env bash
# Validates the control listener's /metrics with `promtool check metrics` (Debian
# package `prometheus`) after real traffic: the demo API, a few Python `websockets`
# clients (messages, a push, a replacement, closes), then one scrape.
#
#   scripts/check-metrics.sh            # uses target/release/ws2api
#   WS2API_BIN=target/debug/ws2api scripts/check-metrics.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

BIN="${WS2API_BIN:-target/release/ws2api}"
command -v promtool >/dev/null || { echo "check-metrics: promtool missing (apt-get install prometheus)" >&2; exit 2; }
[ -x "$BIN" ] || { echo "check-metrics: $BIN missing (cargo build --release)" >&2; exit 2; }

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
P1=$(free_port); P2=$(free_port); P3=$(free_port)
WORK=$(mktemp -d)
"$BIN" --demo --demo-listen "127.0.0.1:$P3" --listen "127.0.0.1:$P1" --control-listen "127.0.0.1:$P2" --shards 2 \
    2>"$WORK/ws2api.err" &
PID=$!
trap 'kill -TERM $PID 2>/dev/null || true; wait $PID 2>/dev/null || true; rm -rf "$WORK"' EXIT

python3 - "$P1" "$P2" <<'PY'
import asyncio, sys, urllib.request, websockets
public, control = sys.argv[1], sys.argv[2]

async def connect(cid):
    # The gateway's listeners are bound before it runs; retry only while it starts.
    for _ in range(100):
        try:
            return await websockets.connect(f"ws://127.0.0.1:{public}/{cid}")
        except OSError:
            await asyncio.sleep(0.05)
    raise SystemExit("gateway did not accept connections")

async def main():
    clients = [await connect(f"metrics-{i}") for i in range(6)]
    for i, ws in enumerate(clients):
        await ws.send(f"hello {i}")
        assert await asyncio.wait_for(ws.recv(), 5) == f"echo: hello {i}"
    req = urllib.request.Request(f"http://127.0.0.1:{control}/metrics-0", data=b"pushed", method="POST")
    assert urllib.request.urlopen(req, timeout=5).status == 200
    assert await asyncio.wait_for(clients[0].recv(), 5) == "pushed"
    replacement = await connect("metrics-1")
    for ws in clients[2:]:
        await ws.close(1000, "bye")
    await replacement.close()
asyncio.run(main())
PY

curl -sf "http://127.0.0.1:$P2/metrics" > "$WORK/metrics.txt"
promtool check metrics < "$WORK/metrics.txt"
echo "check-metrics: promtool accepts /metrics ($(grep -vc '^#' "$WORK/metrics.txt") samples)"
