#!/bin/bash
# Runs the ctest suite of one build N times and prints each failing test's failure count.
#   scripts/flake-hunt.sh N [ctest args...]
# Environment:
#   FLAKE_BUILD=build        the build directory (build-asan for the sanitizer build)
#   FLAKE_BUSY=1             keep one core busy with a spinning process pinned to it while the
#                            suite runs (the other engineers' load on a shared 2-core machine)
#   FLAKE_LOG=dir            where each run's ctest output is kept (default: $FLAKE_BUILD/flake-hunt)
# Exit status: 0 when every run passed, 1 otherwise.  No test is ever retried: a test that
# failed once in N runs is a flake to be fixed at its root (tests/README.md).
# Example: FLAKE_BUILD=build-asan scripts/flake-hunt.sh 10 -j2 -LE 'e2e|soak|bench-smoke'
set -uo pipefail
cd "$(dirname "$0")/.."

if [ $# -lt 1 ] || ! [[ $1 =~ ^[1-9][0-9]*$ ]]; then
    echo "usage: scripts/flake-hunt.sh N [ctest args...]   (N >= 1)" >&2
    exit 2
fi
runs=$1
shift
build=${FLAKE_BUILD:-build}
logdir=${FLAKE_LOG:-$build/flake-hunt}
if [ ! -f "$build/CTestTestfile.cmake" ]; then
    echo "flake-hunt.sh: $build is not a configured test build (run scripts/check.sh or cmake first)" >&2
    exit 2
fi
mkdir -p "$logdir"

busy_pid=
stop_busy() { [ -n "$busy_pid" ] && kill "$busy_pid" 2>/dev/null; wait 2>/dev/null; busy_pid=; }
trap stop_busy EXIT
if [ "${FLAKE_BUSY:-0}" = 1 ]; then
    cpu=$(($(nproc) - 1))
    # A shell busy loop; ends with this script (trap) and at the latest after 2 hours.
    taskset -c "$cpu" timeout 7200 sh -c 'while :; do :; done' &
    busy_pid=$!
    echo "flake-hunt: core $cpu kept busy (pid $busy_pid)"
fi

declare -A fails=()
failed_runs=0
total_tests=0
start=$(date +%s)
for ((i = 1; i <= runs; i++)); do
    log="$logdir/run-$i.log"
    t0=$(date +%s)
    ctest --test-dir "$build" --output-on-failure --timeout 600 "$@" >"$log" 2>&1
    rc=$?
    n=$(sed -n 's/.*tests passed, [0-9]* tests failed out of \([0-9]*\).*/\1/p' "$log" | tail -1)
    total_tests=${n:-$total_tests}
    names=$(sed -n 's/^[[:space:]]*[0-9]* - \([^ ]*\) (.*/\1/p' "$log")
    if [ $rc -ne 0 ]; then
        failed_runs=$((failed_runs + 1))
        [ -z "$names" ] && names="(ctest-exit-$rc)"
        for t in $names; do fails[$t]=$((${fails[$t]:-0} + 1)); done
    fi
    echo "flake-hunt: run $i/$runs rc=$rc $(($(date +%s) - t0)) s${names:+ failed: $(echo $names)}"
done
stop_busy

echo "flake-hunt: $runs runs of $total_tests tests in $build, $(($(date +%s) - start)) s; runs with a failure: $failed_runs"
if [ ${#fails[@]} -eq 0 ]; then
    echo "flake-hunt: no test failed"
else
    for t in "${!fails[@]}"; do printf '%6d/%d  %s\n' "${fails[$t]}" "$runs" "$t"; done | sort -rn
    echo "flake-hunt: logs in $logdir/run-*.log"
fi
[ $failed_runs -eq 0 ]
