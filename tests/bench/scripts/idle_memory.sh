#!/usr/bin/env bash
# idle_memory.sh — server RSS per idle WebSocket connection (issue 5: goal ≤ 4 KiB per connection
# at 10,000 connections, all answering heartbeats).
#
# usage: idle_memory.sh [--conns N] [--hold S] [--server ringside|nchan|both] [--smoke] [--pin]
# Method: RSS (VmRSS, /proc/PID/status) of the server process after start, then with N idle
# connections open (sampled at READY and again after half of --hold, the larger value counts);
# (loaded − baseline) / N. Ringside runs with --heartbeat-interval 2 so that every connection has to
# answer several heartbeats (pings and {"type":"heartbeat"}) during --hold; the loadgen must end with
# all N still open. nchan: the worker process's RSS (nchan sends no heartbeats by default).
source "$(dirname "$0")/lib.sh"
bench_parse_common "$@"
set -- "${BENCH_ARGS[@]+"${BENCH_ARGS[@]}"}"
CONNS=10000 HOLD=10
[[ $SMOKE == 1 ]] && CONNS=200 HOLD=3
while [[ $# -gt 0 ]]; do
    case $1 in
        --conns) CONNS=$2; shift 2 ;;
        --hold) HOLD=$2; shift 2 ;;
        *) die "unknown option $1" ;;
    esac
done

declare -A PER OPEN
for s in $(bench_servers); do
    server_start "$s" --heartbeat-interval 2 --heartbeat-misses 3
    base=$(rss_kib "$SERVER_PID")
    loadgen_start "idle_$s" --url "ws://127.0.0.1:$SERVER_PORT$(events_path)" --conns "$CONNS" \
        --duration "$HOLD" --max-pending 256
    r1=$(rss_kib "$SERVER_PID")
    sleep "$(awk -v h="$HOLD" 'BEGIN {print h / 2}')"   # time-based sampling point, not a sync
    r2=$(rss_kib "$SERVER_PID")
    fds=$(fd_count "$SERVER_PID")
    loaded=$(( r1 > r2 ? r1 : r2 ))
    loadgen_wait "idle_$s"
    j=$WORK/idle_$s.json
    connected=$(json "$j" 'j["connected"]')
    OPEN[$s]=$(json "$j" 'j["open_at_end"]')
    PER[$s]=$(awk -v b="$base" -v l="$loaded" -v n="$connected" 'BEGIN {printf "%.2f", n ? (l - b) / n : 0}')
    log "$s: baseline ${base} KiB, loaded ${loaded} KiB, fds $fds, connected $connected," \
        "open at end ${OPEN[$s]}, heartbeats $(json "$j" 'j["messages"]["heartbeat"]')," \
        "pings $(json "$j" 'j["pings"]'), closed by server $(json "$j" 'j["closed_by_server"]')," \
        "per conn ${PER[$s]} KiB"
    server_stop
    [[ $connected -gt 0 ]] || die "$s: no connection established"
done
args=(conns="$CONNS" hold_s="$HOLD" pinned="$PIN")
for s in $(bench_servers); do
    args+=("${s}_kib_per_conn=${PER[$s]}" "${s}_open_at_end=${OPEN[$s]}")
done
[[ $SERVERS == both ]] && args+=("ringside_vs_nchan=$(ratio "${PER[ringside]}" "${PER[nchan]}")")
[[ $SERVERS != nchan ]] && args+=("ringside_options=${RINGSIDE_LIMIT_ARGS[*]} --heartbeat-interval 2 --heartbeat-misses 3")
result idle_memory "${args[@]}"
