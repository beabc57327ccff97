#!/usr/bin/env bash
# Load test of ws2api on one machine: bench API + gateway + ws2api-load, with the
# gateway's RSS and CPU sampled every second, into results/<timestamp>-<name>/:
#   load.csv      one row per second from ws2api-load (connections, msgs, latency)
#   samples.csv   one row per second: gateway and bench-API RSS and CPU, machine CPU, and the
#                 gateway's peak RSS within that second (VmHWM, reset every sample)
#   load.txt      ws2api-load's own summary (key value)
#   summary.txt   RSS per connection, CPU µs per message, msgs/s, latency, errors; with
#                 --broadcasts also CPU µs per delivery, deliveries per gateway CPU-second,
#                 POST → first / last delivery per broadcast, RSS before / during broadcasts
#   plot.svg      connections, msgs/s, latency, RSS and CPU over time
#
# Usage: scripts/loadtest.sh [--smoke] [--name NAME] [--connections N] [--ramp N/s]
#          [--interval 10s] [--duration 30s] [--drain 5s] [--closed-loop] [--pushes N/s]
#          [--broadcasts P/s] [--groups K] [--broadcast-size 1KiB] [--broadcast-delay 3s]
#          [--workers N] [--shards N] [--api-threads N] [--no-build]
#          [--listen ADDR] [--control-listen ADDR] [--api-listen ADDR]
# Every flag also reads LOAD_<FLAG> from the environment (LOAD_CONNECTIONS=19000 ...).
# LOAD_GATEWAY_BIN=path runs another gateway binary with ws2api's flags in its place, e.g.
# target/release/examples/floor_gateway (the epoll floor, see docs/BENCHMARKS.md).
# LOAD_GATEWAY_ARGS="--flag value ..." adds gateway flags (split on spaces), e.g. the edge
# limits: LOAD_GATEWAY_ARGS="--max-message-rate 100 --max-connections-per-ip 100000".
# LOAD_TLS_ARGS="--tls-ca FILE [--tls-server-name NAME] [--tls-client-cert F --tls-client-key F]"
# makes ws2api-load connect with wss:// and these flags (split on spaces); the gateway's own
# TLS flags go in LOAD_GATEWAY_ARGS.
# --smoke: 300 connections, 1 msg/s each plus 50 pushes/s for 4 s; fails unless 0 errors.
# --broadcasts P: the bench API joins client i to group g<i mod K> (--groups K) and
# ws2api-load POSTs P broadcasts/s (over all groups) to /groups/<g> from the ramp's end
# plus --broadcast-delay to the end of --duration; every member checks it got them all,
# in order. Use --interval 0s for members that send nothing of their own.
# Exit code: ws2api-load's (0 = no errors), 2 for a setup problem.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

NAME=${LOAD_NAME:-run}
CONNECTIONS=${LOAD_CONNECTIONS:-1000}
RAMP=${LOAD_RAMP:-1000}
INTERVAL=${LOAD_INTERVAL:-10s}
DURATION=${LOAD_DURATION:-30s}
DRAIN=${LOAD_DRAIN:-5s}
CLOSED_LOOP=${LOAD_CLOSED_LOOP:-0}
PUSHES=${LOAD_PUSHES:-0}
BROADCASTS=${LOAD_BROADCASTS:-0}
BGROUPS=${LOAD_GROUPS:-1}
BROADCAST_SIZE=${LOAD_BROADCAST_SIZE:-1KiB}
BROADCAST_DELAY=${LOAD_BROADCAST_DELAY:-3s}
WORKERS=${LOAD_WORKERS:-0}
SHARDS=${LOAD_SHARDS:-2}
API_THREADS=${LOAD_API_THREADS:-1}
LISTEN=${LOAD_LISTEN:-127.0.0.1:7001}
CONTROL_LISTEN=${LOAD_CONTROL_LISTEN:-127.0.0.1:7002}
API_LISTEN=${LOAD_API_LISTEN:-127.0.0.1:8000}
BUILD=1
SMOKE=0

while [ $# -gt 0 ]; do
    case "$1" in
        --smoke) SMOKE=1; NAME=smoke; CONNECTIONS=300; RAMP=1000; INTERVAL=1s; DURATION=4s; DRAIN=3s; PUSHES=50; WORKERS=2 ;;
        --name) NAME=$2; shift ;;
        --connections) CONNECTIONS=$2; shift ;;
        --ramp) RAMP=$2; shift ;;
        --interval) INTERVAL=$2; shift ;;
        --duration) DURATION=$2; shift ;;
        --drain) DRAIN=$2; shift ;;
        --closed-loop) CLOSED_LOOP=1 ;;
        --pushes) PUSHES=$2; shift ;;
        --broadcasts) BROADCASTS=$2; shift ;;
        --groups) BGROUPS=$2; shift ;;
        --broadcast-size) BROADCAST_SIZE=$2; shift ;;
        --broadcast-delay) BROADCAST_DELAY=$2; shift ;;
        --workers) WORKERS=$2; shift ;;
        --shards) SHARDS=$2; shift ;;
        --api-threads) API_THREADS=$2; shift ;;
        --listen) LISTEN=$2; shift ;;
        --control-listen) CONTROL_LISTEN=$2; shift ;;
        --api-listen) API_LISTEN=$2; shift ;;
        --no-build) BUILD=0 ;;
        -h|--help) sed -n '2,31p' "$0"; exit 0 ;;
        *) echo "loadtest.sh: unknown flag $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done

say() { printf 'loadtest: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 2; }

# ---- limits the run needs ------------------------------------------------------------
NOFILE=$(ulimit -n)
HARD_NOFILE=$(ulimit -Hn)
if [ "$NOFILE" != unlimited ] && [ "$HARD_NOFILE" != unlimited ] && [ "$NOFILE" -lt "$HARD_NOFILE" ]; then
    ulimit -n "$HARD_NOFILE" && NOFILE=$HARD_NOFILE
fi
# The gateway holds one fd per client plus its backend pool (grows with concurrency).
if [ "$NOFILE" != unlimited ] && [ $((CONNECTIONS + 200)) -gt "$NOFILE" ]; then
    die "ulimit -n is $NOFILE: the gateway needs ~$((CONNECTIONS + 200)) open files for $CONNECTIONS clients.
  Fix: sysctl/limits.d-ws2api.conf (nofile, new login session) or LimitNOFILE= for systemd; see sysctl/README.md."
fi
SOMAXCONN=$(cat /proc/sys/net/core/somaxconn 2>/dev/null || echo 4096)
if [ "$SOMAXCONN" -lt 1024 ] || [ "$SOMAXCONN" -lt $((RAMP / 4)) ]; then
    say "warning: net.core.somaxconn=$SOMAXCONN is small for a ramp of $RAMP/s (accept-queue overflows = connect errors).
  Fix: sysctl/99-ws2api.conf (net.core.somaxconn, net.ipv4.tcp_max_syn_backlog)."
fi
read -r PORT_LO PORT_HI < /proc/sys/net/ipv4/ip_local_port_range
PORTS=$((PORT_HI - PORT_LO + 1))
# ws2api-load spreads its sources over 127.0.0.2, .3, …: at most a quarter of the range
# each. connect() takes even ports first and scans all of them before it tries an odd
# one, so a source holding more than half the range costs a full scan per connect: at
# 2000 connects/s that stalled the whole machine for seconds (see docs/BENCHMARKS.md).
PER_SOURCE=$(( PORTS / 4 < 5000 ? PORTS / 4 : 5000 ))
[ "$PER_SOURCE" -ge 1000 ] || die "net.ipv4.ip_local_port_range $PORT_LO-$PORT_HI leaves too few ephemeral ports.
  Fix: sysctl/99-ws2api.conf (net.ipv4.ip_local_port_range = 1024 65535)."
say "limits: nofile=$NOFILE somaxconn=$SOMAXCONN ephemeral ports=$PORTS ($PER_SOURCE connections per source address)"

port_busy() { (exec 3<>"/dev/tcp/${1%:*}/${1##*:}") 2>/dev/null; }
# A previous run's servers may still be closing their sockets: give them 10 s.
for addr in "$LISTEN" "$CONTROL_LISTEN" "$API_LISTEN"; do
    for _ in $(seq 100); do port_busy "$addr" || continue 2; sleep 0.1; done
    die "$addr is already in use; pick others with --listen/--control-listen/--api-listen"
done

# ---- build ---------------------------------------------------------------------------
if [ "$BUILD" = 1 ]; then
    say "cargo build --release --bins"
    cargo build --release --bins >&2
fi
BIN=target/release
for b in ws2api ws2api-bench-api ws2api-load; do
    [ -x "$BIN/$b" ] || die "$BIN/$b is missing (run without --no-build)"
done
GATEWAY_BIN=${LOAD_GATEWAY_BIN:-$BIN/ws2api}
[ -x "$GATEWAY_BIN" ] || die "LOAD_GATEWAY_BIN=$GATEWAY_BIN is not an executable"

OUT=results/$(date +%Y%m%d-%H%M%S)-$NAME
mkdir -p "$OUT"
say "results in $OUT"
{
    echo "name $NAME"
    echo "date $(date -Iseconds)"
    echo "nproc $(nproc)"
    echo "cpu $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
    echo "kernel $(uname -r)"
    echo "gateway $GATEWAY_BIN"
    echo "gateway_args ${LOAD_GATEWAY_ARGS:-}"
    echo "tls_args ${LOAD_TLS_ARGS:-}"
    echo "connections $CONNECTIONS ramp $RAMP interval $INTERVAL duration $DURATION closed_loop $CLOSED_LOOP pushes $PUSHES workers $WORKERS shards $SHARDS api_threads $API_THREADS broadcasts $BROADCASTS groups $BGROUPS broadcast_size $BROADCAST_SIZE"
} > "$OUT/run.txt"

# ---- start the servers; stop them (only those) on any exit ---------------------------
PIDS=()
SAMPLER=
cleanup() {
    [ -n "$SAMPLER" ] && kill "$SAMPLER" 2>/dev/null || true
    # Last started first (the gateway's last Disconnects still reach the API), each one
    # waited for, so that its ports are free when this script returns; SIGKILL after 5 s.
    local i pid watchdog
    for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
        pid=${PIDS[i]}
        kill -TERM "$pid" 2>/dev/null || continue
        (sleep 5; kill -KILL "$pid" 2>/dev/null) &
        watchdog=$!
        wait "$pid" 2>/dev/null || true
        kill "$watchdog" 2>/dev/null || true
        wait "$watchdog" 2>/dev/null || true
    done
}
trap cleanup EXIT
BROADCASTING=0
[ "$BROADCASTS" != 0 ] && BROADCASTING=1
API_ARGS=()
[ "$BROADCASTING" = 1 ] && API_ARGS+=(--groups "$BGROUPS")

wait_port() {
    for _ in $(seq 100); do port_busy "$1" && return 0; sleep 0.1; done
    die "nothing listens on $1 after 10 s (see $OUT/*.log)"
}

"$BIN/ws2api-bench-api" --listen "$API_LISTEN" --threads "$API_THREADS" "${API_ARGS[@]}" 2> "$OUT/api.log" &
API_PID=$!; PIDS+=("$API_PID")
wait_port "$API_LISTEN"
# shellcheck disable=SC2086 # LOAD_GATEWAY_ARGS is split into flags on purpose
"$GATEWAY_BIN" --api-url "http://$API_LISTEN/" --listen "$LISTEN" --control-listen "$CONTROL_LISTEN" \
    --shards "$SHARDS" --log-level info ${LOAD_GATEWAY_ARGS:-} 2> "$OUT/gateway.log" &
GW_PID=$!; PIDS+=("$GW_PID")
wait_port "$LISTEN"
wait_port "$CONTROL_LISTEN"

# ---- sampler: gateway and API RSS (VmRSS, KiB) and CPU (utime+stime, ticks), machine busy ticks,
# and the gateway's peak RSS since the previous sample (VmHWM, reset by writing 5 to
# clear_refs: it resets only the high-water mark, it does not touch the page tables' bits)
TICKS=$(getconf CLK_TCK)
echo "clk_tck $TICKS" >> "$OUT/run.txt"
sample_proc() { # pid -> "rss_kib cpu_ticks"
    local rss=0 line rest
    while read -r k v _; do [ "$k" = VmRSS: ] && rss=$v; done < "/proc/$1/status" 2>/dev/null || true
    read -r line < "/proc/$1/stat" 2>/dev/null || { echo "0 0"; return; }
    rest=${line##*) }
    read -r -a f <<< "$rest"
    echo "$rss $(( f[11] + f[12] ))"
}
# The same, summed over pid and its live descendants: a LOAD_GATEWAY_BIN that is a script
# running several processes (scripts/haproxy-tls-front.sh: HAProxy + ws2api) counts whole.
sample_tree() {
    local pids=("$1") i=0 kids c rss=0 cpu=0 r t
    while [ "$i" -lt "${#pids[@]}" ]; do
        for c in /proc/"${pids[i]}"/task/*/children; do
            kids=
            # The list has no newline at its end: read says EOF, having read it.
            read -r kids < "$c" 2>/dev/null || true
            # shellcheck disable=SC2206 # a list of pids
            pids+=($kids)
        done
        i=$((i + 1))
    done
    for i in "${pids[@]}"; do
        read -r r t <<< "$(sample_proc "$i")"
        rss=$((rss + r)); cpu=$((cpu + t))
    done
    echo "$rss $cpu"
}
(
    echo "unix_ms,gw_rss_kib,gw_cpu_ticks,api_rss_kib,api_cpu_ticks,machine_busy_ticks,machine_total_ticks,gw_hwm_kib"
    while kill -0 "$GW_PID" 2>/dev/null; do
        now=${EPOCHREALTIME/./}; now=$((now / 1000))
        read -r g_rss g_cpu <<< "$(sample_tree "$GW_PID")"
        read -r a_rss a_cpu <<< "$(sample_proc "$API_PID")"
        read -r _ u n s idle iow irq sirq steal _ < /proc/stat
        g_hwm=0
        while read -r k v _; do [ "$k" = VmHWM: ] && g_hwm=$v; done < "/proc/$GW_PID/status" 2>/dev/null || true
        echo 5 > "/proc/$GW_PID/clear_refs" 2>/dev/null || true
        echo "$now,$g_rss,$g_cpu,$a_rss,$a_cpu,$((u + n + s + irq + sirq + steal)),$((u + n + s + idle + iow + irq + sirq + steal)),$g_hwm"
        sleep 1
    done
) > "$OUT/samples.csv" &
SAMPLER=$!
sleep 2 # a baseline: RSS and CPU at 0 connections

# ---- the load --------------------------------------------------------------------------
SCHEME=ws
TLS_ARGS=()
# shellcheck disable=SC2206 # LOAD_TLS_ARGS is split into flags on purpose
[ -n "${LOAD_TLS_ARGS:-}" ] && SCHEME=wss && TLS_ARGS=(${LOAD_TLS_ARGS})
LOAD_ARGS=(--url "$SCHEME://$LISTEN/" "${TLS_ARGS[@]}" --control "http://$CONTROL_LISTEN/" --connections "$CONNECTIONS"
    --ramp "$RAMP" --interval "$INTERVAL" --duration "$DURATION" --drain "$DRAIN" --pushes "$PUSHES"
    --workers "$WORKERS" --conns-per-source "$PER_SOURCE" --csv "$OUT/load.csv" --summary "$OUT/load.txt")
[ "$CLOSED_LOOP" = 1 ] && LOAD_ARGS+=(--closed-loop)
[ "$BROADCASTING" = 1 ] && LOAD_ARGS+=(--broadcasts "$BROADCASTS" --groups "$BGROUPS"
    --broadcast-size "$BROADCAST_SIZE" --broadcast-delay "$BROADCAST_DELAY")
echo "command $BIN/ws2api-load ${LOAD_ARGS[*]}" >> "$OUT/run.txt"
say "$BIN/ws2api-load ${LOAD_ARGS[*]}"
set +e
"$BIN/ws2api-load" "${LOAD_ARGS[@]}" 2> "$OUT/load.log"
LOAD_RC=$?
set -e
sleep 2 # the gateway after the clients left
kill "$SAMPLER" 2>/dev/null || true; wait "$SAMPLER" 2>/dev/null || true; SAMPLER=
if ! kill -0 "$GW_PID" 2>/dev/null; then
    say "error: the gateway died during the run (see $OUT/gateway.log)"
    LOAD_RC=1
fi
tail -n 5 "$OUT/load.log" >&2 || true

python3 scripts/summarize.py "$OUT" > "$OUT/summary.txt" || say "warning: summarize.py failed"
python3 scripts/plot.py "$OUT" || say "warning: plot.py failed"
cat "$OUT/summary.txt" >&2
if [ "$SMOKE" = 1 ] && [ "$LOAD_RC" != 0 ]; then
    say "smoke: FAILED (errors, see $OUT/load.log)"
fi
exit "$LOAD_RC"
