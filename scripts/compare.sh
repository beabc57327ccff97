#!/usr/bin/env bash
# ws2api vs Pushpin on the same machine, the same workloads, the same bench API and the
# same load generator, in one run. For each workload: ws2api through scripts/loadtest.sh,
# then Pushpin (Debian package `pushpin` 1.36, WebSocket-over-HTTP to the bench API) with
# its own runner below, sampled the same way (RSS and CPU summed over all of Pushpin's
# processes: the runner, condure, zurl, pushpin-proxy, pushpin-handler).
#
#   a) --connections N (5000) × 1 msg per --interval (10s) for --duration (30s)
#   b) closed loop with --closed-connections (2000) for --closed-duration (20s)
#   c) broadcast fan-out: --bcast-connections (2000) idle members in --groups (1) group(s),
#      --broadcasts (1) per second of --broadcast-size (1KiB) for --bcast-duration (20s);
#      ws2api: POST /groups/<g> on the control listener (bench API --groups: X-Group-Join);
#      Pushpin: POST /publish/ on its push_in_http port (bench API --groups: a GRIP
#      subscribe control message in the OPEN answer). Not in the default list;
#      scripts/broadcast-compare.sh runs it.
#
# Results in results/<timestamp>-<name>/:
#   ws2api-a/ pushpin-a/ ws2api-b/ pushpin-b/   loadtest.sh-style folders (summary.txt,
#                         plot.svg, load.csv, samples.csv ...); pushpin-*/ also hold
#                         procs.csv (per-process RSS and CPU), pushpin.conf, routes, logs/
#   compare.txt           the table: ws2api / Pushpin ratios per workload
#
# Usage: scripts/compare.sh [--name NAME] [--workloads a,b] [--connections N] [--interval 10s]
#          [--duration 30s] [--closed-connections N] [--closed-duration 20s] [--ramp N/s]
#          [--bcast-connections N] [--bcast-duration 20s] [--broadcasts P/s] [--groups K]
#          [--broadcast-size 1KiB]
#          [--drain 5s] [--shards N] [--api-threads N] [--pushpin-log-level 0..3]
#          [--only ws2api|pushpin] [--no-build] [--no-install]
# Every flag also reads COMPARE_<FLAG> from the environment (COMPARE_CONNECTIONS=2000 ...).
# Pushes are not compared: Pushpin publishes through GRIP channels, not per-client POSTs,
# so both sides run without pushes. Pushpin is installed with apt-get if missing (its
# service is kept from starting) unless --no-install; it always runs by hand here, in
# its own session, killed with that session at the end.
# Exit code: 0 when every run finished (errors under load are results, not failures),
# 2 for a setup problem.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

NAME=${COMPARE_NAME:-compare}
WORKLOADS=${COMPARE_WORKLOADS:-a,b}
CONNECTIONS=${COMPARE_CONNECTIONS:-5000}
INTERVAL=${COMPARE_INTERVAL:-10s}
DURATION=${COMPARE_DURATION:-30s}
CLOSED_CONNECTIONS=${COMPARE_CLOSED_CONNECTIONS:-2000}
CLOSED_DURATION=${COMPARE_CLOSED_DURATION:-20s}
BCAST_CONNECTIONS=${COMPARE_BCAST_CONNECTIONS:-2000}
BCAST_DURATION=${COMPARE_BCAST_DURATION:-20s}
BROADCASTS=${COMPARE_BROADCASTS:-1}
BGROUPS=${COMPARE_GROUPS:-1}
BROADCAST_SIZE=${COMPARE_BROADCAST_SIZE:-1KiB}
RAMP=${COMPARE_RAMP:-1000}
DRAIN=${COMPARE_DRAIN:-5s}
SHARDS=${COMPARE_SHARDS:-2}
API_THREADS=${COMPARE_API_THREADS:-1}
PP_LOG_LEVEL=${COMPARE_PUSHPIN_LOG_LEVEL:-1}
ONLY=${COMPARE_ONLY:-}
BUILD=1
INSTALL=1

while [ $# -gt 0 ]; do
    case "$1" in
        --name) NAME=$2; shift ;;
        --workloads) WORKLOADS=$2; shift ;;
        --connections) CONNECTIONS=$2; shift ;;
        --interval) INTERVAL=$2; shift ;;
        --duration) DURATION=$2; shift ;;
        --closed-connections) CLOSED_CONNECTIONS=$2; shift ;;
        --closed-duration) CLOSED_DURATION=$2; shift ;;
        --bcast-connections) BCAST_CONNECTIONS=$2; shift ;;
        --bcast-duration) BCAST_DURATION=$2; shift ;;
        --broadcasts) BROADCASTS=$2; shift ;;
        --groups) BGROUPS=$2; shift ;;
        --broadcast-size) BROADCAST_SIZE=$2; shift ;;
        --ramp) RAMP=$2; shift ;;
        --drain) DRAIN=$2; shift ;;
        --shards) SHARDS=$2; shift ;;
        --api-threads) API_THREADS=$2; shift ;;
        --pushpin-log-level) PP_LOG_LEVEL=$2; shift ;;
        --only) ONLY=$2; shift ;;
        --no-build) BUILD=0 ;;
        --no-install) INSTALL=0 ;;
        -h|--help) sed -n '2,36p' "$0"; exit 0 ;;
        *) echo "compare.sh: unknown flag $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done

say() { printf 'compare: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 2; }

case "$ONLY" in ""|ws2api|pushpin) ;; *) die "--only: ws2api or pushpin" ;; esac
case "$PP_LOG_LEVEL" in 0|1|2|3) ;; *) die "--pushpin-log-level: 0..3" ;; esac
for w in ${WORKLOADS//,/ }; do
    case "$w" in a|b|c) ;; *) die "--workloads: a comma list of a, b, c (got $w)" ;; esac
done
run_ws2api() { [ "$ONLY" != pushpin ]; }
run_pushpin() { [ "$ONLY" != ws2api ]; }

# ---- Pushpin present? ------------------------------------------------------------------
PP_TEMPLATE=scripts/pushpin/pushpin.conf.template
PP_INTERNAL=${PUSHPIN_INTERNAL_CONF:-/usr/lib/pushpin/internal.conf}
if run_pushpin; then
    if ! command -v pushpin >/dev/null; then
        [ "$INSTALL" = 1 ] || die "pushpin is not installed (apt-get install -y pushpin, or drop --no-install)"
        [ "$(id -u)" = 0 ] || die "pushpin is not installed and this is not root: sudo apt-get install -y pushpin"
        say "installing pushpin with apt-get (its service is kept from starting)"
        POLICY=
        if [ ! -e /usr/sbin/policy-rc.d ]; then
            printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d
            POLICY=/usr/sbin/policy-rc.d
        fi
        DEBIAN_FRONTEND=noninteractive apt-get install -y pushpin >&2 || { [ -n "$POLICY" ] && rm -f "$POLICY"; die "apt-get install pushpin failed"; }
        [ -n "$POLICY" ] && rm -f "$POLICY"
        if [ -d /run/systemd/system ] && command -v systemctl >/dev/null; then
            systemctl disable --now pushpin zurl >&2 2>/dev/null || true
        fi
    fi
    for b in pushpin condure zurl pushpin-proxy pushpin-handler; do
        command -v "$b" >/dev/null || die "$b is missing (package pushpin and its dependencies condure, zurl)"
    done
    [ -r "$PP_INTERNAL" ] || die "$PP_INTERNAL is missing (set PUSHPIN_INTERNAL_CONF to Pushpin's internal.conf)"
    PP_VERSION=$(pushpin --version 2>/dev/null | head -n1)
    say "using $PP_VERSION"
fi

# ---- build once --------------------------------------------------------------------------
if [ "$BUILD" = 1 ]; then
    say "cargo build --release --bins"
    cargo build --release --bins >&2
fi
BIN=target/release
for b in ws2api ws2api-bench-api ws2api-load; do
    [ -x "$BIN/$b" ] || die "$BIN/$b is missing (run without --no-build)"
done

NOFILE=$(ulimit -n)
HARD_NOFILE=$(ulimit -Hn)
if [ "$NOFILE" != unlimited ] && [ "$HARD_NOFILE" != unlimited ] && [ "$NOFILE" -lt "$HARD_NOFILE" ]; then
    ulimit -n "$HARD_NOFILE" && NOFILE=$HARD_NOFILE
fi
read -r PORT_LO PORT_HI < /proc/sys/net/ipv4/ip_local_port_range
# At most a quarter of the ephemeral range per source address (see loadtest.sh).
PORTS=$((PORT_HI - PORT_LO + 1))
PER_SOURCE=$(( PORTS / 4 < 5000 ? PORTS / 4 : 5000 ))

OUT=results/$(date +%Y%m%d-%H%M%S)-$NAME
mkdir -p "$OUT"
say "results in $OUT"
{
    echo "date $(date -Iseconds)"
    echo "nproc $(nproc)"
    echo "cpu $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
    echo "kernel $(uname -r)"
    echo "pushpin ${PP_VERSION:-not run}"
    echo "command $0 --name $NAME --workloads $WORKLOADS --connections $CONNECTIONS --interval $INTERVAL --duration $DURATION --closed-connections $CLOSED_CONNECTIONS --closed-duration $CLOSED_DURATION --bcast-connections $BCAST_CONNECTIONS --bcast-duration $BCAST_DURATION --broadcasts $BROADCASTS --groups $BGROUPS --broadcast-size $BROADCAST_SIZE --ramp $RAMP --drain $DRAIN --shards $SHARDS --api-threads $API_THREADS --pushpin-log-level $PP_LOG_LEVEL${ONLY:+ --only $ONLY}"
} > "$OUT/compare-run.txt"

# Free TCP ports below the ephemeral range (condure binds 0.0.0.0, so check that).
free_ports() { # n -> n ports
    python3 - "$1" "$PORT_LO" <<'PY'
import random, socket, sys
n, hi = int(sys.argv[1]), max(11000, int(sys.argv[2]))
got, held = [], []
while len(got) < n:
    p = random.randrange(10000, hi)
    s = socket.socket()
    try:
        s.bind(("0.0.0.0", p))
    except OSError:
        s.close()
        continue
    held.append(s)
    got.append(p)
print(*got)
PY
}
port_busy() { (exec 3<>"/dev/tcp/${1%:*}/${1##*:}") 2>/dev/null; }

# ---- what this script started, stopped on any exit ------------------------------------
PP_SID= PP_API= SAMPLER= PP_RUNDIR=
stop_pushpin() {
    [ -n "$SAMPLER" ] && { kill "$SAMPLER" 2>/dev/null || true; wait "$SAMPLER" 2>/dev/null || true; }
    SAMPLER=
    if [ -n "$PP_SID" ]; then
        # The runner stops its children on SIGTERM; anything left in its session is killed.
        kill -TERM "$PP_SID" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$PP_SID" 2>/dev/null || break; sleep 0.1; done
        local left
        left=$(ps -o pid= -s "$PP_SID" 2>/dev/null || true)
        [ -n "$left" ] && kill -KILL $left 2>/dev/null || true
        PP_SID=
    fi
    if [ -n "$PP_API" ]; then
        kill -TERM "$PP_API" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$PP_API" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$PP_API" 2>/dev/null || true
        PP_API=
    fi
    [ -n "$PP_RUNDIR" ] && rm -rf "$PP_RUNDIR"
    PP_RUNDIR=
}
trap stop_pushpin EXIT

secs() { # 10s, 500ms, 2m -> whole seconds (rounded up)
    python3 -c 'import sys,re; m=re.fullmatch(r"([0-9.]+)(ms|s|m|h)",sys.argv[1]); import math; print(math.ceil(float(m[1])*{"ms":.001,"s":1,"m":60,"h":3600}[m[2]]))' "$1"
}

# workload -> LOAD_* settings for both sides
workload() {
    W_BCAST=0
    case "$1" in
        a) W_CONNS=$CONNECTIONS; W_DURATION=$DURATION; W_INTERVAL=$INTERVAL; W_CLOSED=0
           W_DESC="$CONNECTIONS conns x 1 msg/$INTERVAL for $DURATION" ;;
        b) W_CONNS=$CLOSED_CONNECTIONS; W_DURATION=$CLOSED_DURATION; W_INTERVAL=$INTERVAL; W_CLOSED=1
           W_DESC="closed loop, $CLOSED_CONNECTIONS conns for $CLOSED_DURATION" ;;
        c) W_CONNS=$BCAST_CONNECTIONS; W_DURATION=$BCAST_DURATION; W_INTERVAL=0s; W_CLOSED=0; W_BCAST=1
           W_DESC="$BCAST_CONNECTIONS members in $BGROUPS group(s) x $BROADCASTS broadcasts/s of $BROADCAST_SIZE for $BCAST_DURATION" ;;
    esac
}

# ---- ws2api: scripts/loadtest.sh as is -----------------------------------------------
ws2api_run() { # workload
    local w=$1 ports listen control api rc dir
    workload "$w"
    read -r -a ports <<< "$(free_ports 3)"
    listen=127.0.0.1:${ports[0]} control=127.0.0.1:${ports[1]} api=127.0.0.1:${ports[2]}
    local args=(--no-build --name "$NAME-ws2api-$w" --connections "$W_CONNS" --ramp "$RAMP"
        --interval "$W_INTERVAL" --duration "$W_DURATION" --drain "$DRAIN" --pushes 0
        --shards "$SHARDS" --api-threads "$API_THREADS"
        --listen "$listen" --control-listen "$control" --api-listen "$api")
    [ "$W_CLOSED" = 1 ] && args+=(--closed-loop)
    [ "$W_BCAST" = 1 ] && args+=(--broadcasts "$BROADCASTS" --groups "$BGROUPS" --broadcast-size "$BROADCAST_SIZE")
    say "[$w] ws2api: $W_DESC: scripts/loadtest.sh ${args[*]}"
    set +e
    scripts/loadtest.sh "${args[@]}" 2> "$OUT/ws2api-$w.loadtest.log"
    rc=$?
    set -e
    dir=$(sed -n 's/^loadtest: results in //p' "$OUT/ws2api-$w.loadtest.log" | tail -n1)
    if [ -n "$dir" ] && [ -d "$dir" ]; then
        mv "$dir" "$OUT/ws2api-$w"
        echo "load_rc $rc" >> "$OUT/ws2api-$w/run.txt"
        echo "loadtest $(printf '%q ' scripts/loadtest.sh "${args[@]}")" >> "$OUT/ws2api-$w/run.txt"
    else
        say "[$w] ws2api: loadtest.sh made no results folder (rc $rc, see $OUT/ws2api-$w.loadtest.log)"
        mkdir -p "$OUT/ws2api-$w"; echo "load_rc $rc" > "$OUT/ws2api-$w/run.txt"
    fi
    say "[$w] ws2api: load rc $rc"
}

# ---- Pushpin: the same pieces as loadtest.sh, Pushpin in place of the gateway ----------
sample_proc() { # pid -> "rss_kib cpu_ticks"
    local rss=0 line rest
    while read -r k v _; do [ "$k" = VmRSS: ] && rss=$v; done < "/proc/$1/status" 2>/dev/null || true
    read -r line < "/proc/$1/stat" 2>/dev/null || { echo "0 0"; return; }
    rest=${line##*) }
    read -r -a f <<< "$rest"
    echo "$rss $(( f[11] + f[12] ))"
}

pushpin_run() { # workload
    local w=$1 D ports api http push_in push_in_sub push_in_http command rc
    workload "$w"
    D=$OUT/pushpin-$w
    mkdir -p "$D/logs"
    D=$(cd "$D" && pwd)
    read -r -a ports <<< "$(free_ports 6)"
    api=${ports[0]} http=${ports[1]} push_in=${ports[2]} push_in_sub=${ports[3]} push_in_http=${ports[4]} command=${ports[5]}
    PP_RUNDIR=$(mktemp -d /tmp/ws2api-pp.XXXXXX) # short: ipc:// paths are unix sockets
    sed -e "s#ipc:///var/run/zurl/#ipc://{rundir}/{ipc_prefix}#" "$PP_INTERNAL" > "$PP_RUNDIR/internal.conf"
    sed -e "s#@RUNDIR@#$PP_RUNDIR#g" -e "s#@LOGDIR@#$D/logs#g" -e "s#@LOG_LEVEL@#$PP_LOG_LEVEL#g" \
        -e "s#@HTTP_PORT@#127.0.0.1:$http#g" -e "s#@PUSH_IN_PORT@#$push_in#g" \
        -e "s#@PUSH_IN_SUB_PORT@#$push_in_sub#g" -e "s#@PUSH_IN_HTTP_PORT@#$push_in_http#g" \
        -e "s#@COMMAND_PORT@#$command#g" "$PP_TEMPLATE" > "$PP_RUNDIR/pushpin.conf"
    echo "* 127.0.0.1:$api,over_http" > "$PP_RUNDIR/routes"
    cp "$PP_RUNDIR/pushpin.conf" "$PP_RUNDIR/routes" "$PP_RUNDIR/internal.conf" "$D/"
    {
        echo "name $NAME-pushpin-$w"
        echo "date $(date -Iseconds)"
        echo "nproc $(nproc)"
        echo "cpu $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
        echo "kernel $(uname -r)"
        echo "connections $W_CONNS ramp $RAMP interval $W_INTERVAL duration $W_DURATION closed_loop $W_CLOSED pushes 0 workers 0 pushpin $PP_VERSION api_threads $API_THREADS shards 1 broadcasts $W_BCAST groups $BGROUPS broadcast_size $BROADCAST_SIZE"
        echo "clk_tck $(getconf CLK_TCK)"
    } > "$D/run.txt"

    local api_args=()
    [ "$W_BCAST" = 1 ] && api_args+=(--groups "$BGROUPS")
    "$BIN/ws2api-bench-api" --listen "127.0.0.1:$api" --threads "$API_THREADS" "${api_args[@]}" 2> "$D/api.log" &
    PP_API=$!
    for _ in $(seq 100); do port_busy "127.0.0.1:$api" && break; sleep 0.1; done
    port_busy "127.0.0.1:$api" || die "bench API does not listen on 127.0.0.1:$api (see $D/api.log)"
    # Own session (setsid keeps the PID: the caller is no group leader); the children get
    # their own process groups but stay in this session, so the session is what we kill.
    setsid pushpin --config "$PP_RUNDIR/pushpin.conf" > "$D/pushpin.log" 2>&1 < /dev/null &
    PP_SID=$!
    for _ in $(seq 150); do port_busy "127.0.0.1:$http" && break; sleep 0.1; done
    port_busy "127.0.0.1:$http" || die "Pushpin does not listen on 127.0.0.1:$http (see $D/pushpin.log, $D/logs/)"
    local procs=() names=() p
    for _ in $(seq 50); do
        mapfile -t procs < <(ps -o pid= -s "$PP_SID" | tr -d ' ')
        [ "${#procs[@]}" -ge 5 ] && grep -q '] started' "$D/pushpin.log" && break
        sleep 0.1
    done
    for p in "${procs[@]}"; do names+=("$(cat "/proc/$p/comm" 2>/dev/null || echo '?')"); done
    ps -o pid,pgid,sid,comm,args -s "$PP_SID" > "$D/processes.txt" || true
    echo "pushpin_processes ${names[*]}" >> "$D/run.txt"
    say "[$w] pushpin: ${#procs[@]} processes: ${names[*]} (session $PP_SID), WebSocket on 127.0.0.1:$http"

    (
        echo "unix_ms,gw_rss_kib,gw_cpu_ticks,api_rss_kib,api_cpu_ticks,machine_busy_ticks,machine_total_ticks"
        echo "unix_ms,comm,pid,rss_kib,cpu_ticks" > "$D/procs.csv"
        while kill -0 "$PP_SID" 2>/dev/null; do
            now=${EPOCHREALTIME/./}; now=$((now / 1000))
            rss=0 cpu=0
            for i in "${!procs[@]}"; do
                read -r r c <<< "$(sample_proc "${procs[$i]}")"
                rss=$((rss + r)) cpu=$((cpu + c))
                echo "$now,${names[$i]},${procs[$i]},$r,$c" >> "$D/procs.csv"
            done
            read -r a_rss a_cpu <<< "$(sample_proc "$PP_API")"
            read -r _ u n s idle iow irq sirq steal _ < /proc/stat
            echo "$now,$rss,$cpu,$a_rss,$a_cpu,$((u + n + s + irq + sirq + steal)),$((u + n + s + idle + iow + irq + sirq + steal))"
            sleep 1
        done
    ) > "$D/samples.csv" &
    SAMPLER=$!
    sleep 2 # a baseline at 0 connections

    local load_args=(--url "ws://127.0.0.1:$http/" --control "http://127.0.0.1:$push_in_http/"
        --connections "$W_CONNS" --ramp "$RAMP" --interval "$W_INTERVAL" --duration "$W_DURATION"
        --drain "$DRAIN" --pushes 0 --workers 0 --conns-per-source "$PER_SOURCE"
        --csv "$D/load.csv" --summary "$D/load.txt")
    [ "$W_CLOSED" = 1 ] && load_args+=(--closed-loop)
    [ "$W_BCAST" = 1 ] && load_args+=(--broadcasts "$BROADCASTS" --groups "$BGROUPS"
        --broadcast-size "$BROADCAST_SIZE" --publish pushpin)
    echo "command $BIN/ws2api-load ${load_args[*]}" >> "$D/run.txt"
    say "[$w] pushpin: $W_DESC: $BIN/ws2api-load ${load_args[*]}"
    # ws2api-load bounds itself (ramp + duration + drain, hard deadline 30 s later); the
    # timeout is a second bound.
    local bound=$(( W_CONNS / RAMP + $(secs "$W_DURATION") + $(secs "$DRAIN") + 60 ))
    set +e
    timeout -k 5 "$bound" "$BIN/ws2api-load" "${load_args[@]}" 2> "$D/load.log"
    rc=$?
    set -e
    sleep 2 # Pushpin after the clients left
    kill "$SAMPLER" 2>/dev/null || true; wait "$SAMPLER" 2>/dev/null || true; SAMPLER=
    local dead=()
    for i in "${!procs[@]}"; do kill -0 "${procs[$i]}" 2>/dev/null || dead+=("${names[$i]}"); done
    kill -0 "$PP_API" 2>/dev/null || dead+=("bench-api")
    echo "load_rc $rc" >> "$D/run.txt"
    echo "died ${dead[*]:-none}" >> "$D/run.txt"
    [ "${#dead[@]}" -gt 0 ] && say "[$w] pushpin: died during the run: ${dead[*]} (see $D/pushpin.log, $D/logs/)"
    stop_pushpin
    # Warnings and errors Pushpin logged (at --pushpin-log-level >= 1).
    echo "log_warnings $(cat "$D"/logs/*.log "$D/pushpin.log" 2>/dev/null | grep -c -E '^\[(WARN|WARNING)\]' || true)" >> "$D/run.txt"
    echo "log_errors $(cat "$D"/logs/*.log "$D/pushpin.log" 2>/dev/null | grep -c -E '^\[(ERR|ERROR)\]' || true)" >> "$D/run.txt"
    tail -n 5 "$D/load.log" >&2 || true
    if [ -s "$D/load.txt" ]; then
        python3 scripts/summarize.py "$D" > "$D/summary.txt" || say "warning: summarize.py failed"
        python3 scripts/plot.py "$D" || say "warning: plot.py failed"
    else
        say "[$w] pushpin: ws2api-load wrote no summary (rc $rc, see $D/load.log)"
    fi
    say "[$w] pushpin: load rc $rc"
}

for w in ${WORKLOADS//,/ }; do
    if run_ws2api; then ws2api_run "$w"; fi
    if run_pushpin; then pushpin_run "$w"; fi
done

python3 scripts/compare.py "$OUT" > "$OUT/compare.txt" || die "compare.py failed"
cat "$OUT/compare.txt"
say "results in $OUT"
