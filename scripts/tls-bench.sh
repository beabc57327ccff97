#!/usr/bin/env bash
# What TLS costs (docs/BENCHMARKS.md, "TLS"), in one interleaved series on this machine:
#   1. full handshakes per second per core, ECDSA P-256 and RSA-2048 certificates:
#      `openssl s_time -new` against a one-shard gateway; the gateway's CPU time over the
#      connections s_time made (it closes as soon as its side is done, often before the
#      gateway reads its Finished, so the gateway's own counter misses many);
#   2. scripts/loadtest.sh, ROUNDS rounds of: 19k idle and 19k × 1 msg/10 s over ws:// and
#      over wss:// (RSS per connection, CPU per message); then 9k × 1 msg/10 s over wss://
#      to ws2api itself and to HAProxy terminating TLS in front of plain ws2api
#      (scripts/haproxy-tls-front.sh; both processes summed). 9k because HAProxy holds two
#      descriptors per client under this machine's 20,000-file limit.
# Usage: scripts/tls-bench.sh [ROUNDS=2]. Needs openssl, haproxy, a release build.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
ROUNDS=${1:-2}
OUT="results/$(date +%Y%m%d-%H%M%S)-tls-bench"
mkdir -p "$OUT"
CERTS="$OUT/certs"
mkdir -p "$CERTS"
BIN=target/release

# ---- certificates: a CA; ECDSA P-256 and RSA-2048 server certificates for localhost
(
    cd "$CERTS"
    openssl ecparam -name prime256v1 -genkey -noout -out ca.key
    openssl req -x509 -new -key ca.key -subj "/CN=ws2api bench CA" -days 2 -out ca.pem
    printf "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n" > server.ext
    openssl ecparam -name prime256v1 -genkey -noout -out ecdsa.key
    openssl genrsa -out rsa.key 2048
    for k in ecdsa rsa; do
        openssl req -new -key "$k.key" -subj "/CN=localhost" -out "$k.csr"
        openssl x509 -req -in "$k.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
            -extfile server.ext -out "$k.pem"
        cat "$k.pem" "$k.key" > "$k.haproxy.pem"
    done
) 2> "$OUT/certs.log"

ticks() { # pid -> utime+stime in clock ticks
    local line rest
    read -r line < "/proc/$1/stat"
    rest=${line##*) }
    read -r -a f <<< "$rest"
    echo $(( f[11] + f[12] ))
}
port_free() { ! (exec 3<>"/dev/tcp/${1%:*}/${1#*:}") 2>/dev/null; }
wait_listen() { for _ in $(seq 100); do port_free "$1" || return 0; sleep 0.1; done; echo "nothing on $1" >&2; exit 1; }

# ---- 1. handshakes per second per core
HZ=$(getconf CLK_TCK)
echo "| certificate | full handshakes | gateway CPU | per handshake | per core |" > "$OUT/handshakes.md"
echo "|---|---|---|---|---|" >> "$OUT/handshakes.md"
for round in $(seq "$ROUNDS"); do
    for k in ecdsa rsa; do
        "$BIN/ws2api" --shards 1 --listen 127.0.0.1:7443 --control-listen 127.0.0.1:7444 \
            --tls-cert "$CERTS/$k.pem" --tls-key "$CERTS/$k.key" --log-level warn 2>> "$OUT/handshake-gateway.log" &
        gw=$!
        wait_listen 127.0.0.1:7443
        wait_listen 127.0.0.1:7444
        before=$(ticks "$gw")
        openssl s_time -connect 127.0.0.1:7443 -new -time 6 -CAfile "$CERTS/ca.pem" > "$OUT/s_time-$k-r$round.txt" 2>&1 || true
        after=$(ticks "$gw")
        kill -TERM "$gw"; wait "$gw" || true
        n=$(sed -n 's/^\([0-9]*\) connections in .* real seconds.*/\1/p' "$OUT/s_time-$k-r$round.txt" | tail -1)
        python3 - "$k" "${n:-0}" "$((after - before))" "$HZ" >> "$OUT/handshakes.md" <<'PY'
import sys
k, n, t, hz = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
cpu = t / hz
per = cpu / n * 1e6 if n else float("nan")
print(f"| {k} | {n} | {cpu:.2f} s | {per:.0f} µs | {1e6 / per:.0f}/s |")
PY
    done
done
cat "$OUT/handshakes.md"

# ---- 2. the load series
TLS="--tls-cert $ROOT/$CERTS/ecdsa.pem --tls-key $ROOT/$CERTS/ecdsa.key"
CA="--tls-ca $ROOT/$CERTS/ca.pem"
run() { # name, extra env..., then loadtest flags
    local name=$1; shift
    echo "== $name" >&2
    env "$@" > "$OUT/$name.log" 2>&1 || echo "!! $name failed (see $OUT/$name.log)" >&2
    grep -o 'results/[0-9-]*-[a-z0-9-]*' "$OUT/$name.log" | tail -1 > "$OUT/$name.dir" || true
}
IDLE=(--connections 19000 --ramp 2000 --interval 600s --duration 15s)
ECHO19=(--connections 19000 --ramp 2000 --interval 10s --duration 25s)
ECHO9=(--connections 9000 --ramp 2000 --interval 10s --duration 25s)
for round in $(seq "$ROUNDS"); do
    run "ws-idle-r$round" scripts/loadtest.sh --no-build --name "ws-idle-r$round" "${IDLE[@]}"
    run "wss-idle-r$round" LOAD_GATEWAY_ARGS="$TLS" LOAD_TLS_ARGS="$CA" scripts/loadtest.sh --no-build --name "wss-idle-r$round" "${IDLE[@]}"
    run "ws-19k-r$round" scripts/loadtest.sh --no-build --name "ws-19k-r$round" "${ECHO19[@]}"
    run "wss-19k-r$round" LOAD_GATEWAY_ARGS="$TLS" LOAD_TLS_ARGS="$CA" scripts/loadtest.sh --no-build --name "wss-19k-r$round" "${ECHO19[@]}"
    run "wss-9k-r$round" LOAD_GATEWAY_ARGS="$TLS" LOAD_TLS_ARGS="$CA" scripts/loadtest.sh --no-build --name "wss-9k-r$round" "${ECHO9[@]}"
    run "haproxy-9k-r$round" LOAD_GATEWAY_BIN="$ROOT/scripts/haproxy-tls-front.sh" HAPROXY_TLS_PEM="$ROOT/$CERTS/ecdsa.haproxy.pem" \
        LOAD_TLS_ARGS="$CA" scripts/loadtest.sh --no-build --name "haproxy-9k-r$round" "${ECHO9[@]}"
done

# ---- the table
{
    echo "| run | RSS per connection | CPU per message | p50 / p99 | errors |"
    echo "|---|---|---|---|---|"
    for d in "$OUT"/*.dir; do
        name=$(basename "$d" .dir); dir=$(cat "$d")
        [ -f "$dir/summary.txt" ] || { echo "| $name | (no summary) | | | |"; continue; }
        rss=$(sed -n 's/^RSS per connection *//p' "$dir/summary.txt")
        cpu=$(sed -n 's/^gateway CPU per message *//p' "$dir/summary.txt")
        lat=$(sed -n 's/^latency steady p50\/p99\/p999 *//p' "$dir/summary.txt" | awk '{print $1" / "$3" ms"}')
        err=$(sed -n 's/^errors *//p' "$dir/summary.txt")
        echo "| $name | $rss | $cpu | $lat | $err |"
    done
} | tee "$OUT/load.md"
echo "tls-bench: $OUT" >&2
