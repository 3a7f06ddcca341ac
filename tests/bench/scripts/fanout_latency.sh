#!/usr/bin/env bash
# fanout_latency.sh — publish→receipt latency with many subscribers (issue 6: 1,000 subscribers ×
# 100 status events/s = 100,000 deliveries/s, p99 ≤ 1 ms; nchan ~5–6 ms publishing by HTTP).
#
# usage: fanout_latency.sh [--subs N] [--rate R] [--seconds S] [--agents A]
#                          [--server ringside|nchan|both] [--smoke] [--pin]
# Method: N loadgen subscribers on /ws/events; ringside-bench-pub publishes A×R status events/s
# for S seconds (Ringside: through the SDK into the ring; nchan: HTTP POST of the same JSON);
# latency = receipt CLOCK_REALTIME − the event's ts_ns, every delivery recorded.
source "$(dirname "$0")/lib.sh"
bench_parse_common "$@"
set -- "${BENCH_ARGS[@]+"${BENCH_ARGS[@]}"}"
SUBS=1000 RATE=100 SECS=10 AGENTS=1
[[ $SMOKE == 1 ]] && SUBS=200 SECS=2
while [[ $# -gt 0 ]]; do
    case $1 in
        --subs) SUBS=$2; shift 2 ;;
        --rate) RATE=$2; shift 2 ;;
        --seconds) SECS=$2; shift 2 ;;
        --agents) AGENTS=$2; shift 2 ;;
        *) die "unknown option $1" ;;
    esac
done
COUNT=$(awk -v r="$RATE" -v s="$SECS" 'BEGIN {printf "%d", r * s}')
args=(subs="$SUBS" agents="$AGENTS" rate_per_agent="$RATE" seconds="$SECS" pinned="$PIN")
declare -A P99
for s in $(bench_servers); do
    server_start "$s"
    fanout_run "lat_$s" "$SUBS" "$AGENTS" "$RATE" "$COUNT"
    server_stop
    [[ $FO_EVENTS -gt 0 ]] || die "$s: nothing delivered"
    P99[$s]=$FO_P99
    args+=("${s}_delivered_ratio=$FO_RATIO" "${s}_p50_us=$FO_P50" "${s}_p99_us=$FO_P99"
           "${s}_p99_9_us=$FO_P999" "${s}_max_us=$FO_MAX" "${s}_deliveries_per_s=$FO_DPS"
           "${s}_server_cpu_us_per_delivery=$FO_CPU_US" "${s}_loadgen_cpu_util=$FO_LG_UTIL"
           "${s}_publish_rate=$FO_PUB_RATE" "${s}_publish_refused=$FO_PUB_ERRORS")
done
[[ $SERVERS == both ]] && args+=("p99_ringside_vs_nchan=$(ratio "${P99[ringside]}" "${P99[nchan]}")")
[[ $SERVERS != nchan ]] && args+=("ringside_options=${RINGSIDE_LIMIT_ARGS[*]}")
result fanout_latency "${args[@]}"
