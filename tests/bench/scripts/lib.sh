# shellcheck shell=bash
# lib.sh — shared helpers of the Ringside load benchmarks (sourced, not run).
#
# Conventions of every benchmark script:
#   --server ringside|nchan|both   which server(s) to measure (default both; nchan is the peer)
#   --smoke                        seconds-long mode for ctest (small sizes)
#   --pin                          server on CPU 0, load client and publisher on CPU 1
# Each script prints its result as one line "RESULT {json}" on stdout (and per-server detail on
# stderr) and appends nothing anywhere. Every wait is bounded. Everything started is stopped on exit.
#
# Environment: BENCH_LG_THREADS=2 (two loadgen threads where the script allows; not with --pin),
# RINGSIDE_BIN (directory of ringside, ringside-loadgen, ringside-bench-pub; default
# <repo>/build/bin), RINGSIDE_LIB, BENCH_RINGSIDE_ARGS (extra daemon options), BENCH_KEEP=1 (keep
# the work directory).
set -euo pipefail

BENCH_SRC_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
BENCH_REPO=$(cd "$BENCH_SRC_DIR/../../.." && pwd)
BIN=${RINGSIDE_BIN:-$BENCH_REPO/build/bin}
PY=/usr/bin/python3
BENCH_PIDS=()
SERVER_PID=""
SERVER_PORT=""
SERVER_KIND=""
SERVERS=both
SMOKE=0
PIN=0
WORK=$(mktemp -d /tmp/ringside-bench.XXXXXX)

# The rate-limit and capacity options every Ringside benchmark run states (DESIGN.md defaults are
# 100 msgs/s per connection, 10,000 events/s global, 10 connections/min per IP, 5 per user).
# A load test from one IP with one anonymous user needs them raised; per-benchmark scripts may add
# to this, and print what they used in their RESULT line.
RINGSIDE_LIMIT_ARGS=(--conn-rate 1000000 --user-conns 1000000 --max-connections 20000
                     --conn-msg-rate 1000000 --global-msg-rate 10000000
                     --http-conns-per-ip 1000000 --max-http-conns 1000000 --anon-conn-rate 0)

bench_cleanup() {
    local p
    for p in "${BENCH_PIDS[@]}"; do
        kill "$p" 2>/dev/null || true
    done
    for p in "${BENCH_PIDS[@]}"; do
        wait "$p" 2>/dev/null || true
    done
    if [[ -f $WORK/nginx/nginx.pid ]]; then
        kill "$(cat "$WORK/nginx/nginx.pid")" 2>/dev/null || true
    fi
    if [[ ${BENCH_KEEP:-0} != 1 ]]; then rm -rf "$WORK"; else echo "work dir kept: $WORK" >&2; fi
}
trap bench_cleanup EXIT

die() { echo "bench: $*" >&2; exit 1; }
log() { echo "[$(date +%H:%M:%S)] $*" >&2; }

# Parses the common options; the script's own options are left in BENCH_ARGS.
bench_parse_common() {
    BENCH_ARGS=()
    while [[ $# -gt 0 ]]; do
        case $1 in
            --server) SERVERS=$2; shift 2 ;;
            --smoke) SMOKE=1; shift ;;
            --pin) PIN=1; shift ;;
            *) BENCH_ARGS+=("$1"); shift ;;
        esac
    done
    case $SERVERS in ringside|nchan|both) ;; *) die "--server ringside|nchan|both" ;; esac
    [[ -x $BIN/ringside-loadgen ]] || die "$BIN/ringside-loadgen not built"
}

bench_servers() {
    case $SERVERS in
        both) echo ringside nchan ;;
        *) echo "$SERVERS" ;;
    esac
}

nchan_available() { [[ -x /usr/sbin/nginx && -f /usr/lib/nginx/modules/ngx_nchan_module.so ]]; }

free_port() {
    $PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

server_cpu_prefix() { if [[ $PIN == 1 ]]; then echo "taskset -c 0"; fi; }
client_cpu_args() { if [[ $PIN == 1 ]]; then echo "--cpu 1"; fi; }

# Waits (bounded) until GET http://127.0.0.1:$1$2 answers.
wait_http() {
    curl -s -o /dev/null --retry-connrefused --retry 100 --retry-delay 0 --retry-max-time 15 \
        --max-time 15 "http://127.0.0.1:$1$2" || die "server on port $1 did not come up"
}

# ringside_start [extra daemon options...]: starts the sidecar in embedded mode on a free port.
ringside_start() {
    [[ -x $BIN/ringside ]] || die "$BIN/ringside not built"
    SERVER_PORT=$(free_port)
    mkdir -p "$WORK/shm"
    # shellcheck disable=SC2046
    $(server_cpu_prefix) "$BIN/ringside" --no-auth --listen "127.0.0.1:$SERVER_PORT" \
        --shm-dir "$WORK/shm" --log-level warn "${RINGSIDE_LIMIT_ARGS[@]}" "$@" \
        ${BENCH_RINGSIDE_ARGS:-} >"$WORK/ringside.log" 2>&1 &
    SERVER_PID=$!
    BENCH_PIDS+=("$SERVER_PID")
    SERVER_KIND=ringside
    wait_http "$SERVER_PORT" /healthz
    log "ringside pid $SERVER_PID on :$SERVER_PORT, options: ${RINGSIDE_LIMIT_ARGS[*]} $* ${BENCH_RINGSIDE_ARGS:-}"
}

# nchan_start: nginx (one worker) with the nchan config template on a free port. SERVER_PID is
# the worker process (the one holding connections and doing the work).
nchan_start() {
    nchan_available || die "nginx with nchan not installed (apt-get install nginx-light libnginx-mod-nchan)"
    SERVER_PORT=$(free_port)
    local d=$WORK/nginx
    mkdir -p "$d"
    sed -e "s#@PORT@#$SERVER_PORT#g" -e "s#@DIR@#$d#g" \
        -e "s#worker_rlimit_nofile 65536#worker_rlimit_nofile $(ulimit -Hn)#" \
        "$BENCH_SRC_DIR/nchan.conf.in" >"$d/nginx.conf"
    # shellcheck disable=SC2046
    $(server_cpu_prefix) /usr/sbin/nginx -p "$d" -c "$d/nginx.conf" >"$d/stdout.log" 2>&1 &
    local master=$!
    BENCH_PIDS+=("$master")
    wait_http "$SERVER_PORT" /healthz
    SERVER_PID=$(pgrep -P "$master" | head -1)
    [[ -n $SERVER_PID ]] || die "nginx worker not found"
    SERVER_KIND=nchan
    log "nginx+nchan master $master worker $SERVER_PID on :$SERVER_PORT"
}

server_start() { if [[ $1 == ringside ]]; then shift; ringside_start "$@"; else nchan_start; fi; }

server_stop() {
    local p=$SERVER_PID
    if [[ $SERVER_KIND == nchan ]]; then
        p=$(cat "$WORK/nginx/nginx.pid")
        kill -QUIT "$p" 2>/dev/null || true
        local i
        for ((i = 0; i < 200; i++)); do kill -0 "$p" 2>/dev/null || break; sleep 0.05; done
        rm -f "$WORK/nginx/nginx.pid"
    else
        kill "$p" 2>/dev/null || true
        wait "$p" 2>/dev/null || true
    fi
    SERVER_PID=""
}

# ringside_wait_tasks N: waits (bounded, 15 s) until the sidecar has read N running tasks from the
# rings (GET /metrics, ringside_tasks_running), so that a terminal viewer attaching next finds its
# task instead of being closed with 4004 (unknown task). The SDK returns from rs_task_start when the
# record is in the ring, before the sidecar has read it.
ringside_wait_tasks() {
    local want=$1 i n
    for ((i = 0; i < 300; i++)); do
        n=$(curl -s --max-time 2 "http://127.0.0.1:$SERVER_PORT/metrics" |
            awk '$1 == "ringside_tasks_running" {print $2}')
        [[ -n $n && $n -ge $want ]] && return 0
        sleep 0.05
    done
    die "the sidecar did not see $want running task(s) (saw ${n:-none})"
}

# URL paths per server: the event stream and a terminal stream, and the HTTP publish URL (nchan).
events_path() { echo /ws/events; }
term_path() { echo "/ws/terminal/$1"; }
pub_events_url() { echo "http://127.0.0.1:$SERVER_PORT/pub/events"; }
pub_term_url() { echo "http://127.0.0.1:$SERVER_PORT/pub/terminal/$1"; }

rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
hwm_kib() { awk '/^VmHWM:/ {print $2}' "/proc/$1/status"; }
fd_count() { find "/proc/$1/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l; }
# CPU seconds (user+system) a process has used so far.
cpu_s() { awk -v hz="$(getconf CLK_TCK)" '{print ($14 + $15) / hz}' "/proc/$1/stat"; }

# loadgen_start NAME ARGS...: runs ringside-loadgen in the background (JSON to $WORK/NAME.json)
# and returns when it printed READY (end of its connect phase), bounded by 120 s.
LG_PID=""
loadgen_start() {
    local name=$1; shift
    local fifo=$WORK/$name.fifo
    mkfifo "$fifo"
    # shellcheck disable=SC2046
    "$BIN/ringside-loadgen" $(client_cpu_args) "$@" >"$WORK/$name.json" 2>"$fifo" &
    LG_PID=$!
    BENCH_PIDS+=("$LG_PID")
    exec {LG_FD}<"$fifo"
    local line
    while IFS= read -r -t 120 -u "$LG_FD" line; do
        echo "  loadgen: $line" >&2
        [[ $line == READY* ]] && return 0
    done
    die "loadgen did not become ready"
}

# loadgen_wait NAME: waits for the loadgen to finish (it bounds itself) and checks its exit.
loadgen_wait() {
    local rc=0
    wait "$LG_PID" || rc=$?
    cat <&"$LG_FD" >"$WORK/$1.err" || true
    exec {LG_FD}<&-
    [[ $rc == 0 ]] || { cat "$WORK/$1.err" >&2; die "loadgen exited with $rc"; }
}

# json FILE EXPR: evaluates a Python expression over the JSON object `j` in FILE.
json() { $PY -c "import json,sys; j=json.load(open(sys.argv[1])); print($2)" "$1"; }

# result NAME KEY=VALUE...: prints the one RESULT line of a benchmark as JSON (values that parse as
# JSON stay numbers/objects, others become strings).
result() {
    local name=$1; shift
    $PY - "$name" "$@" <<'EOF'
import json, sys, time, os
out = {"bench": sys.argv[1], "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "nproc": os.cpu_count()}
for kv in sys.argv[2:]:
    k, _, v = kv.partition("=")
    try:
        out[k] = json.loads(v)
    except ValueError:
        out[k] = v
print("RESULT " + json.dumps(out, separators=(",", ":")))
EOF
}

# ratio A B: A / B with 3 decimals, or null.
ratio() { $PY -c "import sys; a,b=sys.argv[1],sys.argv[2]; print('null' if b in ('','0','0.0','null') or a in ('','null') else round(float(a)/float(b),3))" "$1" "$2"; }

# fanout_run NAME SUBS AGENTS RATE COUNT: with a server already started, connects SUBS subscribers
# to the event stream, then publishes COUNT status events per agent from AGENTS agents at RATE
# events/s each (SDK for Ringside, HTTP POST for nchan), waits for the loadgen (which stops once
# every subscriber got AGENTS×COUNT events, or COUNT/RATE + 10 s (smoke: 3 s) after READY) and sets
#   FO_EVENTS FO_RATIO FO_P50 FO_P99 FO_P999 FO_MAX (µs) FO_DPS (deliveries/s) FO_CPU_US (server
#   CPU µs per delivery) FO_LG_UTIL (loadgen CPU utilisation) FO_PUB_RATE (achieved publish rate)
#   FO_PUB_ERRORS (events the publisher could not publish: ring full / failed POST; they count as
#   not delivered).
# nchan is fed with --ts-due (latency counted from the scheduled publish time).
fanout_run() {
    local name=$1 subs=$2 agents=$3 rate=$4 count=$5
    local dur
    local slack=10
    [[ $SMOKE == 1 ]] && slack=3
    dur=$(awk -v c="$count" -v r="$rate" -v k="$slack" 'BEGIN {printf "%d", c / r + k}')
    local threads=1
    [[ $PIN == 0 && ${BENCH_LG_THREADS:-1} == 2 ]] && threads=2
    loadgen_start "$name" --url "ws://127.0.0.1:$SERVER_PORT$(events_path)" --conns "$subs" \
        --expect $((agents * count)) --duration "$dur" --max-pending 256 --threads "$threads"
    local c0 c1 pub
    c0=$(cpu_s "$SERVER_PID")
    local pubargs=(--agents "$agents" --rate "$rate" --count "$count" --mode status)
    if [[ $SERVER_KIND == nchan ]]; then
        # ts_ns = scheduled time: a POST that nchan answers late delays the next one (one
        # keep-alive connection), and that wait is part of the event's latency, as it is for an
        # agent; the SDK never blocks, so Ringside's ts_ns (taken by rs_*) is its due time.
        pubargs+=(--http "$(pub_events_url)" --ts-due)
    else
        pubargs+=(--shm-dir "$WORK/shm" --agent "$name-a{i}")
    fi
    # shellcheck disable=SC2046
    # A publisher that could not publish everything (Ringside: the SDK refused events because the
    # sidecar did not empty the ring in time, RS_EFULL; nchan: failed POSTs) exits non-zero; that is
    # a result of the step (those events count as not delivered), not a failure of the script.
    pub=$("$BIN/ringside-bench-pub" $(client_cpu_args) "${pubargs[@]}") || true
    FO_PUB_ERRORS=$(echo "$pub" | $PY -c 'import json,sys; print(json.load(sys.stdin)["errors"])' 2>/dev/null) ||
        die "publisher failed: $pub"
    # Server CPU is read when publishing ends, before the loadgen closes its connections (whose
    # teardown would be charged to the deliveries otherwise).
    c1=$(cpu_s "$SERVER_PID")
    echo "  publisher: $pub" >&2
    loadgen_wait "$name"
    local j=$WORK/$name.json
    FO_EVENTS=$(json "$j" 'j["events"]')
    FO_RATIO=$(json "$j" 'j["delivered_ratio"]')
    FO_P50=$(json "$j" 'j["latency_us"]["p50"]')
    FO_P99=$(json "$j" 'j["latency_us"]["p99"]')
    FO_P999=$(json "$j" 'j["latency_us"]["p99_9"]')
    FO_MAX=$(json "$j" 'j["latency_us"]["max"]')
    FO_DPS=$(json "$j" 'j["events_per_s"]')
    FO_LG_UTIL=$(json "$j" 'j["cpu_util"]')
    FO_PUB_RATE=$(echo "$pub" | $PY -c 'import json,sys; print(json.load(sys.stdin)["achieved_per_s"])')
    FO_CPU_US=$(awk -v a="$c0" -v b="$c1" -v n="$FO_EVENTS" 'BEGIN {printf "%.3f", n ? (b - a) * 1e6 / n : 0}')
    log "$SERVER_KIND $name: subs $subs, ${agents}x${rate}/s x $count: delivered $FO_EVENTS" \
        "(ratio $FO_RATIO), $FO_DPS deliveries/s, latency p50 $FO_P50 p99 $FO_P99 p99.9 $FO_P999" \
        "max $FO_MAX µs, server CPU $FO_CPU_US µs/delivery, loadgen CPU util $FO_LG_UTIL," \
        "publisher achieved $FO_PUB_RATE/s, refused $FO_PUB_ERRORS," \
        "dropped notices $(json "$j" 'j["dropped_notices"]'), closed $(json "$j" 'j["closed_by_server"]')"
}
