#!/usr/bin/env bash
# Memory per (client, group) membership: N idle clients (ws2api-load) on a 2-shard
# gateway in front of ws2api-bench-api; the gateway's RSS is read with no group, after
# every client joined one group, then after each joined K-1 more (PUT /groups/<g>/<id>
# on the control listener, over keep-alive connections), then after every client left
# them all again. Prints one `key value` line per figure; bounded in time.
#
# Usage: scripts/group-memory.sh [N] [K]   (defaults: 18000 clients, 4 groups each; the
# gateway also holds its API pool and, briefly, a second descriptor per handed-off
# socket, all under the 20,000 files a process may open here)
# Needs: cargo build --release (target/release/{ws2api,ws2api-load,ws2api-bench-api}), python3.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

N=${1:-18000}
K=${2:-4}
BIN=${BIN:-target/release}
PUBLIC=127.0.0.1:17301
CONTROL=127.0.0.1:17302
API=127.0.0.1:18301
LOG=$(mktemp -d)
PIDS=()
# Stop in the reverse order of start (load, gateway, API), each reaped before the next,
# so that the gateway's Disconnects still find the API.
cleanup() {
    for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
        kill "${PIDS[i]}" 2>/dev/null || true
        wait "${PIDS[i]}" 2>/dev/null || true
    done
}
trap cleanup EXIT

ulimit -n "$(ulimit -Hn)"
"$BIN/ws2api-bench-api" --listen "$API" 2> "$LOG/api.log" &
PIDS+=($!)
"$BIN/ws2api" --listen "$PUBLIC" --control-listen "$CONTROL" --api-url "http://$API/" \
    --shards 2 --ping-interval 0s 2> "$LOG/gateway.log" &
GW=$!
PIDS+=($GW)
# The load generator holds N idle connections for at most 10 minutes.
"$BIN/ws2api-load" --url "ws://$PUBLIC/" --control "http://$CONTROL/" -c "$N" --ramp 2000 \
    --interval 0s --duration 600s --drain 1s > "$LOG/load.csv" 2> "$LOG/load.log" &
PIDS+=($!)

rss() { awk '/^VmRSS/ {print $2 * 1024}' "/proc/$GW/status"; }

python3 - "$N" "$K" "$CONTROL" "$GW" <<'EOF'
import http.client, sys, time

n, k, control, gw = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
host, port = control.split(":")

def rss():
    with open(f"/proc/{gw}/status") as f:
        for line in f:
            if line.startswith("VmRSS"):
                return int(line.split()[1]) * 1024

conns = [http.client.HTTPConnection(host, int(port), timeout=10) for _ in range(4)]

def call(method, path, i=0):
    c = conns[i % len(conns)]
    c.request(method, path, body=b"" if method in ("PUT", "POST") else None)
    r = c.getresponse()
    body = r.read()
    return r.status, body

def active():
    _, body = call("GET", "/metrics")
    return sum(int(float(l.rsplit(" ", 1)[1])) for l in body.decode().splitlines()
               if l.startswith("ws2api_connections_active{"))

deadline = time.monotonic() + 120
while active() < n:
    if time.monotonic() > deadline:
        sys.exit(f"only {active()} of {n} connections after 120 s")
    time.sleep(0.5)
time.sleep(2)  # let the ramp's garbage settle before the first reading
base = rss()
print(f"clients {n}")
print(f"rss_no_groups {base}")

def join_all(group):
    for i in range(n):
        status, body = call("PUT", f"/groups/{group}/load-{i}", i)
        if status != 200:
            sys.exit(f"PUT /groups/{group}/load-{i}: {status} {body!r}")

join_all("g0")
one = rss()
print(f"rss_one_group {one}")
print(f"bytes_per_membership_first {(one - base) / n:.1f}")
for g in range(1, k):
    join_all(f"g{g}")
more = rss()
print(f"rss_{k}_groups {more}")
print(f"bytes_per_membership_all {(more - base) / (n * k):.1f}")
status, body = call("GET", "/groups/g0")
print(f"members_g0 {body.decode().strip()}")
_, metrics = call("GET", "/metrics")
m = sum(int(float(l.rsplit(' ', 1)[1])) for l in metrics.decode().splitlines()
        if l.startswith("ws2api_group_memberships{"))
print(f"memberships {m}")
for g in range(k):
    for i in range(n):
        call("DELETE", f"/groups/g{g}/load-{i}", i)
print(f"rss_after_leaving {rss()}")
EOF
