#!/usr/bin/env bash
# fanout_max.sh — highest fan-out rate sustained with ≥ 99 % delivered and p99 ≤ 100 ms (issue 6:
# ≥ 1,000,000 deliveries/s, ≥ 2× nchan; server CPU per delivery ≤ 0.5 µs).
#
# usage: fanout_max.sh [--subs N] [--rates R1,R2,...] [--seconds S] [--server ...] [--smoke] [--pin]
# Method: N subscribers; for each publish rate R (status events/s, one agent) in increasing order,
# a fresh server, S seconds of publishing, deliveries/s = events received / their time span. The
# step passes when delivered ≥ 99 % and p99 ≤ 100 ms; stepping stops at the first failure. Reports
# the best passing step, server CPU µs per delivery and the loadgen's own CPU utilisation (near 1.0
# means the load client, not the server, was the limit: rerun with --pin, or see the docs).
# steps: one "rate:deliveries_per_s:delivered_ratio:p99_us:server_cpu_us_per_delivery:loadgen_cpu_util"
# per step run.
source "$(dirname "$0")/lib.sh"
bench_parse_common "$@"
set -- "${BENCH_ARGS[@]+"${BENCH_ARGS[@]}"}"
SUBS=1000 RATES=100,200,500,1000,2000,5000 SECS=5
[[ $SMOKE == 1 ]] && SUBS=200 RATES=100,400 SECS=1
while [[ $# -gt 0 ]]; do
    case $1 in
        --subs) SUBS=$2; shift 2 ;;
        --rates) RATES=$2; shift 2 ;;
        --seconds) SECS=$2; shift 2 ;;
        *) die "unknown option $1" ;;
    esac
done
args=(subs="$SUBS" rates="$RATES" seconds="$SECS" pinned="$PIN")
declare -A BEST
for s in $(bench_servers); do
    BEST[$s]=0
    best_cpu=null best_p99=null best_rate=0 steps=()
    for r in ${RATES//,/ }; do
        server_start "$s"
        count=$(awk -v r="$r" -v s="$SECS" 'BEGIN {printf "%d", r * s}')
        fanout_run "max_${s}_$r" "$SUBS" 1 "$r" "$count"
        server_stop
        steps+=("$r:$FO_DPS:$FO_RATIO:$FO_P99:$FO_CPU_US:$FO_LG_UTIL")
        pass=$(awk -v q="$FO_RATIO" -v p="$FO_P99" 'BEGIN {print (q >= 0.99 && p <= 100000) ? 1 : 0}')
        [[ $pass == 1 ]] || break
        BEST[$s]=$FO_DPS best_cpu=$FO_CPU_US best_p99=$FO_P99 best_rate=$r
    done
    args+=("${s}_best_deliveries_per_s=${BEST[$s]}" "${s}_best_publish_rate=$best_rate"
           "${s}_best_p99_us=$best_p99" "${s}_server_cpu_us_per_delivery=$best_cpu"
           "${s}_steps=$(IFS=,; echo "${steps[*]}")")
done
[[ $SERVERS == both ]] && args+=("ringside_vs_nchan=$(ratio "${BEST[ringside]}" "${BEST[nchan]}")")
[[ $SERVERS != nchan ]] && args+=("ringside_options=${RINGSIDE_LIMIT_ARGS[*]}")
# A server that passes no step reports 0 (a result, not a failure of the benchmark).
result fanout_max "${args[@]}"
