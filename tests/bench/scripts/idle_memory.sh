#!/usr/bin/env bash
# idle_memory.sh — server RSS per idle WebSocket connection (issue 5: goal ≤ 4 KiB per connection
# at 10,000 connections, all answering heartbeats).
#
# usage: idle_memory.sh [--conns N] [--hold S] [--heartbeat S] [--server ringside|nchan|both]
#                       [--smoke] [--pin]
# Method: RSS (VmRSS, /proc/PID/status) of the server process after start, then once a second
# while N idle connections are held open for --hold seconds after the connect phase; per
# connection = (RSS − baseline) / N, reported as the median of the samples (the time-averaged
# figure), their maximum, and the last sample. Ringside runs with --heartbeat-interval S (default
# 10; the sidecar's default is 30) and --heartbeat-misses 3, so with the default --hold 25 every
# connection answers two heartbeats (ping + {"type":"heartbeat"}) during the hold; the loadgen must
# end with all N still open. Ringside frees an idle connection's wslay buffers after 2 s without
# traffic (hibernation) and makes them anew on its next byte, so the samples right after a
# heartbeat round are the high ones. nchan: the worker process's RSS (it sends no heartbeats by
# default).
source "$(dirname "$0")/lib.sh"
bench_parse_common "$@"
set -- "${BENCH_ARGS[@]+"${BENCH_ARGS[@]}"}"
CONNS=10000 HOLD=25 HB=10
[[ $SMOKE == 1 ]] && CONNS=200 HOLD=4 HB=2
while [[ $# -gt 0 ]]; do
    case $1 in
        --conns) CONNS=$2; shift 2 ;;
        --hold) HOLD=$2; shift 2 ;;
        --heartbeat) HB=$2; shift 2 ;;
        *) die "unknown option $1" ;;
    esac
done

# stats BASE N SAMPLES...: "median max last" of (sample − BASE) / N in KiB.
stats() {
    $PY - "$@" <<'PY'
import statistics, sys
b, n = float(sys.argv[1]), float(sys.argv[2])
v = [(float(x) - b) / n for x in sys.argv[3:]]
print("%.2f %.2f %.2f" % (statistics.median(v), max(v), v[-1]))
PY
}

declare -A MED MAX LAST OPEN
for s in $(bench_servers); do
    server_start "$s" --heartbeat-interval "$HB" --heartbeat-misses 3
    base=$(rss_kib "$SERVER_PID")
    loadgen_start "idle_$s" --url "ws://127.0.0.1:$SERVER_PORT$(events_path)" --conns "$CONNS" \
        --duration "$HOLD" --max-pending 256
    samples=()
    for ((i = 0; i < HOLD - 1; i++)); do
        samples+=("$(rss_kib "$SERVER_PID")")
        sleep 1 # a sampling period, not a synchronisation
    done
    fds=$(fd_count "$SERVER_PID")
    loadgen_wait "idle_$s"
    j=$WORK/idle_$s.json
    connected=$(json "$j" 'j["connected"]')
    [[ $connected -gt 0 ]] || die "$s: no connection established"
    OPEN[$s]=$(json "$j" 'j["open_at_end"]')
    read -r MED[$s] MAX[$s] LAST[$s] < <(stats "$base" "$connected" "${samples[@]}")
    log "$s: baseline ${base} KiB, samples ${samples[*]} KiB, fds $fds, connected $connected," \
        "open at end ${OPEN[$s]}, heartbeats $(json "$j" 'j["messages"]["heartbeat"]')," \
        "pings $(json "$j" 'j["pings"]'), closed by server $(json "$j" 'j["closed_by_server"]')," \
        "per conn: median ${MED[$s]} KiB, max ${MAX[$s]} KiB, last ${LAST[$s]} KiB"
    server_stop
done
args=(conns="$CONNS" hold_s="$HOLD" pinned="$PIN")
for s in $(bench_servers); do
    args+=("${s}_kib_per_conn=${MED[$s]}" "${s}_kib_per_conn_max=${MAX[$s]}"
           "${s}_kib_per_conn_last=${LAST[$s]}" "${s}_open_at_end=${OPEN[$s]}")
done
[[ $SERVERS == both ]] && args+=("ringside_vs_nchan=$(ratio "${MED[ringside]}" "${MED[nchan]}")")
[[ $SERVERS != nchan ]] && args+=("ringside_options=${RINGSIDE_LIMIT_ARGS[*]} --heartbeat-interval $HB --heartbeat-misses 3")
result idle_memory "${args[@]}"
