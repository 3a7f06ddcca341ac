#!/bin/bash
# The demo: installs what is missing, builds, starts the sidecar in embedded mode (no Redis) with
# the dashboard, starts example agents, and shows their events live in this terminal.
#   DEMO_PORT=8765  DEMO_SECONDS=0 (run until Ctrl-C)  DEMO_AGENTS=3
#   DEMO_BUILD_DIR=build-demo  DEMO_NO_BUILD=1 (use binaries already built there; for the demo's test)
set -euo pipefail
cd "$(dirname "$0")/.."
port=${DEMO_PORT:-8765}
seconds=${DEMO_SECONDS:-0}
agents=${DEMO_AGENTS:-3}
build=${DEMO_BUILD_DIR:-build-demo}
log=${TMPDIR:-/tmp}/ringside-demo.$$.log

if [ -z "${DEMO_NO_BUILD:-}" ]; then
    bash scripts/install-deps.sh build
    echo "demo: building..."
    cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DRINGSIDE_TESTS=OFF >"$log" 2>&1 &&
        cmake --build "$build" -j2 --target ringside_daemon ringside-pub ringside-run ringside-example-agent \
            >>"$log" 2>&1 || { tail -n 50 "$log"; exit 1; }
fi

# Another demo (or anything else) on the port would pass the health check below and show its data.
if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "demo: port $port on 127.0.0.1 is already in use (another demo or server?);" \
        "stop it or choose another port: DEMO_PORT=8766 $0" >&2
    exit 1
fi

shm=$(mktemp -d /dev/shm/ringside-demo.XXXXXX)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$shm" "$log" "$log.sidecar"
}
trap cleanup EXIT INT TERM

"$build"/bin/ringside --no-auth --dashboard --listen "127.0.0.1:$port" --shm-dir "$shm" \
    --log-level warn 2>"$log.sidecar" &
pids+=($!)
ready=
for _ in $(seq 100); do
    if ! kill -0 "${pids[0]}" 2>/dev/null; then
        echo "demo: the sidecar did not start:" >&2; cat "$log.sidecar" >&2; exit 1
    fi
    if curl -fsS "http://127.0.0.1:$port/healthz" >/dev/null 2>&1; then ready=1; break; fi
    sleep 0.1
done
if [ -z "$ready" ]; then
    echo "demo: the sidecar did not answer /healthz within 10 s:" >&2; cat "$log.sidecar" >&2; exit 1
fi

for i in $(seq "$agents"); do
    if [ -x "$build"/bin/ringside-example-agent ]; then
        "$build"/bin/ringside-example-agent --shm-dir "$shm" --agent "demo-agent-$i" \
            --project "demo-$(( (i + 1) % 2 + 1 ))" --loop 1000 >/dev/null 2>&1 &
    else
        (for n in $(seq 1000); do
            for s in working stuck working completed idle; do
                "$build"/bin/ringside-pub --shm-dir "$shm" --agent "demo-agent-$i" \
                    --project demo status "$s" "cycle $n" || true
                sleep 1
            done
        done) &
    fi
    pids+=($!)
done

cat <<MSG

  Ringside demo is running (embedded mode, no Redis).
    Dashboard:   http://127.0.0.1:$port/
    Events:      ws://127.0.0.1:$port/ws/events
    Terminal:    ws://127.0.0.1:$port/ws/terminal/{task_id}
    Metrics:     http://127.0.0.1:$port/metrics
  Publish your own event (it appears on the dashboard and below):
    $build/bin/ringside-pub --shm-dir $shm --agent me --project demo status working "hello"
    $build/bin/ringside-run --shm-dir $shm --agent me --project demo --task t1 -- ls --color=always /
  Live events from $agents example agents follow (Ctrl-C stops the demo):

MSG
/usr/bin/python3 scripts/ws-tail.py --seconds "$seconds" "ws://127.0.0.1:$port/ws/events"
