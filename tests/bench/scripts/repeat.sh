#!/usr/bin/env bash
# repeat.sh — runs one benchmark script N times and prints, per run, the load average before it and
# its RESULT line; then the median of every numeric field over the runs (docs/benchmarks.md).
#
# usage: repeat.sh N SCRIPT [script options...]     e.g. repeat.sh 3 fanout_latency.sh --pin
# Output (stdout): "LOAD <1-min load average> <uptime line>" and "RESULT {...}" per run, then
# "MEDIAN {...}". Stderr of the runs goes to stderr. Stops at the first failing run.
set -euo pipefail
[[ $# -ge 2 ]] || { echo "usage: repeat.sh N SCRIPT [options...]" >&2; exit 2; }
n=$1 script=$2
shift 2
dir=$(cd "$(dirname "$0")" && pwd)
results=()
for ((i = 1; i <= n; i++)); do
    echo "LOAD $(cut -d' ' -f1 /proc/loadavg) $(uptime)"
    line=$(bash "$dir/$script" "$@" | grep '^RESULT ') || { echo "run $i of $script failed" >&2; exit 1; }
    echo "$line"
    results+=("${line#RESULT }")
done
/usr/bin/python3 - "${results[@]}" <<'PY'
import json, statistics, sys
runs = [json.loads(a) for a in sys.argv[1:]]
med = {}
for k in runs[0]:
    vals = [r.get(k) for r in runs]
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in vals):
        med[k] = statistics.median(vals)
    elif all(v == vals[0] for v in vals):
        med[k] = vals[0]
    else:
        med[k] = vals
print("MEDIAN " + json.dumps(med, separators=(",", ":")))
PY
