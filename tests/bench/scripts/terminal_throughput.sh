#!/usr/bin/env bash
# terminal_throughput.sh — terminal stream throughput, bytes exact (issue 6: one stream ≥ 200 MB/s
# to one client with zero loss; 100 concurrent streams of 1 MB/s each on time; Node ws ~160 MB/s,
# nchan ~140 MB/s while losing 10–40 %).
#
# usage: terminal_throughput.sh [--streams N] [--mbps R] [--seconds S] [--chunk BYTES]
#                               [--multi] [--no-end] [--server ringside|nchan|both] [--smoke] [--pin]
#   --multi = --streams 100 --mbps 1. R is MB/s (10^6 bytes) per stream, paced by the publisher.
#   --no-end: the publisher leaves its tasks running (no rs_task_end), so the run measures the byte
#   path alone; by default every task is ended after its last byte, as a real agent does, and the
#   viewer must still get every byte before the server closes the terminal (1000, task ended).
# Method: the publisher opens N tasks (Ringside: SDK rs_task_start + rs_write of CHUNK-byte writes;
# nchan: HTTP POST of CHUNK-byte bodies, default 65536 since one POST per 4 KiB cannot reach the
# rate), the loadgen connects one client per stream to /ws/terminal/<task>, then the publisher sends
# R MB/s per stream for S seconds of the pattern byte k = k % 251, which the loadgen verifies byte by
# byte. Reported: received MB/s (aggregate, first to last binary byte), delivered ratio, pattern
# errors (undeclared loss or corruption: the loadgen's pattern offset skips the bytes a gap message
# declares), gap bytes the server declared, bytes_exact (every byte delivered, no gap, no pattern
# error), and whether it finished on time
# (within S + 1 s of the start of publishing). Ringside: the viewers attach once the sidecar has read
# every task start (ringside_tasks_running on /metrics), not merely once the publisher has written it.
source "$(dirname "$0")/lib.sh"
bench_parse_common "$@"
set -- "${BENCH_ARGS[@]+"${BENCH_ARGS[@]}"}"
STREAMS=1 MBPS=200 SECS=5 CHUNK=4096 NCHAN_CHUNK=65536 NO_END=0 SLACK=10
[[ $SMOKE == 1 ]] && MBPS=20 SECS=1 SLACK=3
while [[ $# -gt 0 ]]; do
    case $1 in
        --streams) STREAMS=$2; shift 2 ;;
        --mbps) MBPS=$2; shift 2 ;;
        --seconds) SECS=$2; shift 2 ;;
        --chunk) CHUNK=$2; NCHAN_CHUNK=$2; shift 2 ;;
        --multi) STREAMS=100 MBPS=1; shift ;;
        --no-end) NO_END=1; shift ;;
        *) die "unknown option $1" ;;
    esac
done
BPS=$(awk -v m="$MBPS" 'BEGIN {printf "%d", m * 1e6}')
TOTAL=$(awk -v m="$MBPS" -v s="$SECS" 'BEGIN {printf "%d", m * 1e6 * s}')
args=(streams="$STREAMS" mb_per_s_per_stream="$MBPS" seconds="$SECS" tasks_ended=$((1 - NO_END))
      pinned="$PIN")
declare -A RATE
for s in $(bench_servers); do
    server_start "$s"
    pubargs=(--mode terminal --agents "$STREAMS" --bytes-per-s "$BPS" --total-bytes "$TOTAL"
             --task "bench-t{i}" --go-on-stdin)
    [[ $NO_END == 1 ]] && pubargs+=(--no-end)
    if [[ $s == nchan ]]; then
        pubargs+=(--http "$(pub_term_url "bench-t{i}")" --chunk "$NCHAN_CHUNK")
    else
        pubargs+=(--shm-dir "$WORK/shm" --chunk "$CHUNK" --term-ring-bytes $((16 << 20)))
    fi
    mkfifo "$WORK/pub_in_$s" "$WORK/pub_err_$s"
    # shellcheck disable=SC2046
    "$BIN/ringside-bench-pub" $(client_cpu_args) "${pubargs[@]}" <"$WORK/pub_in_$s" \
        >"$WORK/pub_$s.json" 2>"$WORK/pub_err_$s" &
    pub_pid=$!
    BENCH_PIDS+=("$pub_pid")
    exec {pin}>"$WORK/pub_in_$s" {perr}<"$WORK/pub_err_$s"
    IFS= read -r -t 30 -u "$perr" line || die "publisher did not open"
    [[ $line == OPEN ]] || die "publisher: $line"
    [[ $s == ringside ]] && ringside_wait_tasks "$STREAMS"
    loadgen_start "term_$s" --url "ws://127.0.0.1:$SERVER_PORT$(term_path "bench-t{i}")" \
        --path-mod "$STREAMS" --conns "$STREAMS" --expect-bytes "$TOTAL" --verify-pattern \
        --duration $((SECS + SLACK))
    t0=$(date +%s.%N)
    echo go >&"$pin"
    # The loadgen ends when every byte has arrived (or the server closed every stream), so t1 is
    # the arrival of the last byte; the publisher's own exit (closing 100 handles) is not counted.
    loadgen_wait "term_$s"
    t1=$(date +%s.%N)
    wait "$pub_pid" || { cat <&"$perr" >&2; die "publisher failed"; }
    exec {pin}>&- {perr}<&-
    server_stop
    j=$WORK/term_$s.json
    got=$(json "$j" 'j["binary_bytes"]')
    [[ $got -gt 0 ]] || die "$s: no terminal bytes delivered"
    RATE[$s]=$(json "$j" 'j["binary_mb_per_s"]')
    ratio_s=$(awk -v g="$got" -v t="$TOTAL" -v n="$STREAMS" 'BEGIN {printf "%.6f", g / (t * n)}')
    on_time=$(awk -v a="$t0" -v b="$t1" -v s="$SECS" -v ok="$(json "$j" 'int(j["all_expected"])')" \
        'BEGIN {print (ok && b - a <= s + 1) ? "true" : "false"}')
    perr_n=$(json "$j" 'j["pattern_errors"]')
    gap_n=$(json "$j" 'j["gap_bytes"]')
    exact=$([[ $got == $((TOTAL * STREAMS)) && $perr_n == 0 && $gap_n == 0 ]] && echo true || echo false)
    log "$s: $STREAMS stream(s) × $MBPS MB/s × $SECS s: received $got of $((TOTAL * STREAMS)) bytes" \
        "(ratio $ratio_s) at ${RATE[$s]} MB/s, pattern errors $(json "$j" 'j["pattern_errors"]')," \
        "declared gap bytes $gap_n, bytes exact $exact, on time $on_time," \
        "publisher $(json "$WORK/pub_$s.json" 'j["mb_per_s"]') MB/s," \
        "loadgen CPU util $(json "$j" 'j["cpu_util"]')"
    args+=("${s}_mb_per_s=${RATE[$s]}" "${s}_delivered_ratio=$ratio_s"
           "${s}_pattern_errors=$perr_n" "${s}_gap_bytes=$gap_n" "${s}_bytes_exact=$exact"
           "${s}_on_time=$on_time" "${s}_loadgen_cpu_util=$(json "$j" 'j["cpu_util"]')")
done
[[ $SERVERS == both ]] && args+=("ringside_vs_nchan=$(ratio "${RATE[ringside]}" "${RATE[nchan]}")")
[[ $SERVERS != nchan ]] && args+=("ringside_options=${RINGSIDE_LIMIT_ARGS[*]}" "ringside_chunk=$CHUNK")
[[ $SERVERS != ringside ]] && args+=("nchan_chunk=$NCHAN_CHUNK")
result terminal_throughput "${args[@]}"
