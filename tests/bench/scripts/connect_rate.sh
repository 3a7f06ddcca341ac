#!/usr/bin/env bash
# connect_rate.sh — time to establish N WebSocket connections (issue 5: 10,000 in ≤ 0.5 s; a
# handshake in ≤ 50 µs of server CPU).
#
# usage: connect_rate.sh [--conns N] [--max-pending P] [--server ringside|nchan|both] [--smoke] [--pin]
# Method: the loadgen opens N connections as fast as it can with at most P connects/handshakes in
# flight (connect-rate unlimited); connect_span_s = first connect() to last 101 response. Server CPU
# per handshake = server CPU seconds (utime+stime, /proc/PID/stat) consumed until READY / N.
source "$(dirname "$0")/lib.sh"
bench_parse_common "$@"
set -- "${BENCH_ARGS[@]+"${BENCH_ARGS[@]}"}"
CONNS=10000 PENDING=1000
[[ $SMOKE == 1 ]] && CONNS=200
while [[ $# -gt 0 ]]; do
    case $1 in
        --conns) CONNS=$2; shift 2 ;;
        --max-pending) PENDING=$2; shift 2 ;;
        *) die "unknown option $1" ;;
    esac
done

declare -A SPAN CPU P99 OK LGU
for s in $(bench_servers); do
    server_start "$s"
    c0=$(cpu_s "$SERVER_PID")
    loadgen_start "conn_$s" --url "ws://127.0.0.1:$SERVER_PORT$(events_path)" --conns "$CONNS" \
        --duration 0 --max-pending "$PENDING" --connect-timeout 60 --threads "${BENCH_LG_THREADS:-1}"
    c1=$(cpu_s "$SERVER_PID")
    loadgen_wait "conn_$s"
    j=$WORK/conn_$s.json
    OK[$s]=$(json "$j" 'j["connected"]')
    SPAN[$s]=$(json "$j" 'j["connect_span_s"]')
    P99[$s]=$(json "$j" 'j["connect_us"]["p99"]')
    LGU[$s]=$(json "$j" 'round((j["cpu_user_s"] + j["cpu_sys_s"]) / j["connect_phase_s"], 3)')
    CPU[$s]=$(awk -v a="$c0" -v b="$c1" -v n="${OK[$s]}" 'BEGIN {printf "%.2f", n ? (b - a) * 1e6 / n : 0}')
    log "$s: ${OK[$s]}/$CONNS connected in ${SPAN[$s]} s ($(json "$j" 'j["connects_per_s"]')/s)," \
        "connect p50 $(json "$j" 'j["connect_us"]["p50"]') µs p99 ${P99[$s]} µs," \
        "failed $(json "$j" 'j["connect_failed"] + j["handshake_failed"]'), server CPU ${CPU[$s]} µs/handshake," \
        "loadgen CPU $(json "$j" 'round((j["cpu_user_s"] + j["cpu_sys_s"]) * 1e6 / max(j["connected"], 1), 1)') µs/conn" \
        "(${LGU[$s]} CPU-s per s of connect phase, ${BENCH_LG_THREADS:-1} thread(s))"
    server_stop
    [[ ${OK[$s]} -gt 0 ]] || die "$s: no connection established"
done
args=(conns="$CONNS" max_pending="$PENDING" loadgen_threads="${BENCH_LG_THREADS:-1}" pinned="$PIN")
for s in $(bench_servers); do
    args+=("${s}_connected=${OK[$s]}" "${s}_span_s=${SPAN[$s]}" "${s}_connect_p99_us=${P99[$s]}"
           "${s}_cpu_us_per_handshake=${CPU[$s]}" "${s}_loadgen_cpu_util=${LGU[$s]}")
done
[[ $SERVERS == both ]] && args+=("span_ringside_vs_nchan=$(ratio "${SPAN[ringside]}" "${SPAN[nchan]}")")
[[ $SERVERS != nchan ]] && args+=("ringside_options=${RINGSIDE_LIMIT_ARGS[*]}")
result connect_rate "${args[@]}"
