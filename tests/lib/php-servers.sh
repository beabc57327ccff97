# Shared by the end-to-end scripts that run ws2api in front of a PHP API server
# (tests/chat/run.sh, tests/groups/run.sh): checks for the binaries, a scratch folder,
# cleanup by PID and process group on every exit path, free ports, waiting for a port.
# Source it after `cd "$ROOT"`, with WORK_NAME set (the scratch folder's name).

WS2API_BIN="${WS2API_BIN:-target/release/ws2api}"
PHP="${PHP:-php}"
PYTHON="${PYTHON:-python3}"

[ -x "$WS2API_BIN" ] || { echo "run.sh: gateway binary not found: $WS2API_BIN (cargo build --release?)" >&2; exit 2; }
command -v "$PHP" >/dev/null || { echo "run.sh: php not found (apt-get install php-cli)" >&2; exit 2; }
"$PYTHON" -c 'import websockets' 2>/dev/null || { echo "run.sh: python3 module websockets missing (python3 -m pip install websockets)" >&2; exit 2; }

WORK="$(mktemp -d "${TMPDIR:-/tmp}/ws2api-${WORK_NAME}.XXXXXX")"
PIDS=()      # processes this script started
PHP_PGID=""  # process group of the PHP server (it forks workers)

cleanup() {
    local pid
    # php -S with PHP_CLI_SERVER_WORKERS forks workers that outlive a killed parent,
    # so the PHP server runs in a process group of its own and the whole group goes.
    if [ -n "$PHP_PGID" ]; then
        kill -TERM -- "-$PHP_PGID" 2>/dev/null || true
    fi
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

# A free TCP port (bind port 0, let the kernel choose), none of those in $TAKEN. It runs
# in $(...), so the caller adds the port to TAKEN. (Tiny race until the server binds it
# again; fine on a test machine.)
TAKEN=" "
free_port() {
    local port tries=0
    while ((tries < 20)); do
        tries=$((tries + 1))
        port="$("$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')"
        case "$TAKEN" in *" $port "*) continue ;; esac
        echo "$port"
        return 0
    done
    echo "run.sh: no free port found" >&2
    return 1
}

# Wait until 127.0.0.1:$1 accepts a TCP connection: probe every 0.1 s, at most 10 s.
# Fails early if the process ($2) has already exited.
wait_port() {
    local port="$1" pid="$2" name="$3" deadline=$((SECONDS + 10))
    while ((SECONDS < deadline)); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            return 0
        fi
        kill -0 "$pid" 2>/dev/null || { echo "run.sh: $name exited before listening on port $port" >&2; return 1; }
        sleep 0.1
    done
    echo "run.sh: $name did not listen on port $port within 10 s" >&2
    return 1
}


# Starts one ws2api per name in GATEWAYS (--shards 2 --ping-interval 0s, each on the ports
# P_PUB[name] / P_CTL[name], against the PHP API on P_PHP, its stdout and stderr in
# $WORK/ws2api-<name>.{out,err}) with the flags that function $1 puts in the array FLAGS
# for each name; waits for PHP and every gateway to listen (show_logs and exit 1 if one
# does not), and sets GW_PID[name] and gw_args (--<name> <scheme $2>://... --<name>-control
# http://...) for the test driver.
start_gateways() {
    local flags_of=$1 scheme=$2 g
    FLAGS=()
    for g in "${GATEWAYS[@]}"; do
        "$flags_of" "$g"
        echo "run.sh: ws2api $g on ${P_PUB[$g]} (control ${P_CTL[$g]}): ${FLAGS[*]}"
        "$WS2API_BIN" \
            --listen "127.0.0.1:${P_PUB[$g]}" \
            --control-listen "127.0.0.1:${P_CTL[$g]}" \
            --api-url "http://127.0.0.1:$P_PHP/" \
            --shards 2 \
            --ping-interval 0s \
            "${FLAGS[@]}" \
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
        gw_args+=("--$g" "$scheme://127.0.0.1:${P_PUB[$g]}" "--$g-control" "http://127.0.0.1:${P_CTL[$g]}")
    done
}

# Takes free ports: P_PHP for the PHP API, P_PUB[name] and P_CTL[name] for each name in
# GATEWAYS (declare -A P_PUB P_CTL GW_PID first).
gateway_ports() {
    local g
    P_PHP="$(free_port)"; TAKEN="$TAKEN$P_PHP "
    for g in "${GATEWAYS[@]}"; do
        P_PUB[$g]="$(free_port)"; TAKEN="$TAKEN${P_PUB[$g]} "
        P_CTL[$g]="$(free_port)"; TAKEN="$TAKEN${P_CTL[$g]} "
    done
}

# Starts the PHP API $2 on P_PHP in a process group of its own, with the environment
# variable named $1 set to LOG ($WORK/api.jsonl, emptied), where the script logs every
# request as a JSON line.
start_php() {
    LOG="$WORK/api.jsonl"
    : >"$LOG"
    echo "run.sh: php on 127.0.0.1:$P_PHP"
    env "$1=$LOG" PHP_CLI_SERVER_WORKERS=4 \
        setsid "$PHP" -S "127.0.0.1:$P_PHP" "$2" >"$WORK/php.log" 2>&1 &
    PHP_PID=$!
    PIDS+=("$PHP_PID")
    PHP_PGID=$PHP_PID
}

# The last lines of every gateway's stderr and of the PHP server's log (a run.sh that
# has other servers defines a show_logs of its own).
gateway_logs() {
    local g
    for g in "${GATEWAYS[@]}"; do
        echo "---- ws2api ($g) stderr (last 30 lines) ----" >&2
        tail -n 30 "$WORK/ws2api-$g.err" >&2 || true
    done
    echo "---- php server log (last 20 lines) ----" >&2
    tail -n 20 "$WORK/php.log" >&2 || true
}

# Runs the test driver ("$PYTHON" "$@") in the background and waits for it, so that a
# signal to run.sh runs its traps at once (the cleanup stops the driver too) instead of
# after the test has finished; shows the logs if it failed, and exits with its status.
run_driver() {
    local status=0
    "$PYTHON" "$@" &
    TEST_PID=$!
    PIDS+=("$TEST_PID")
    wait "$TEST_PID" || status=$?
    if [ "$status" -ne 0 ]; then
        show_logs
    fi
    exit "$status"
}
