#!/bin/bash
# The whole test suite, as CI runs it: installs what is missing, builds, runs ctest in the normal
# build, then again under ASan+UBSan, the ring tests under TSan, and every fuzzer briefly.
#   scripts/check.sh                 everything
#   CHECK_STAGES="main asan" scripts/check.sh   a subset (main asan tsan fuzz)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
stages=${CHECK_STAGES:-main asan tsan fuzz}
jobs=${CHECK_JOBS:-2}
FUZZ_SECONDS=${FUZZ_SECONDS:-15}
export FUZZ_SECONDS

bash scripts/install-deps.sh test

status=0
summary=()

run_stage() { # name, build dir, ctest label regex (or ""), label exclude regex, cmake args...
    local name=$1 dir=$2 include=$3 exclude=$4
    shift 4
    echo "==== stage $name: configure and build ($dir)"
    # A build dir configured with another compiler cannot be switched in place.
    if [ -f "$dir/CMakeCache.txt" ]; then
        local want have
        want=$(command -v "${CC:-cc}")
        have=$(sed -n 's/^CMAKE_C_COMPILER:[A-Z]*=//p' "$dir/CMakeCache.txt")
        if [ "$(readlink -f "$want")" != "$(readlink -f "$have")" ]; then rm -rf "$dir"; fi
    fi
    cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DRINGSIDE_TESTS=ON "$@" >"$dir.configure.log" 2>&1 ||
        { cat "$dir.configure.log"; return 1; }
    cmake --build "$dir" -j"$jobs" 2>&1 | tail -n 40 | grep -v '^\[' || true
    [ "${PIPESTATUS[0]}" -eq 0 ] || return 1
    echo "==== stage $name: ctest"
    # No retries: a test passes or it fails.  A test that fails now and then is a flake to be
    # found with scripts/flake-hunt.sh and fixed at its root (tests/README.md).
    local args=(--test-dir "$dir" --output-on-failure -j"$jobs" --timeout 600)
    [ -n "$include" ] && args+=(-L "$include")
    [ -n "$exclude" ] && args+=(-LE "$exclude")
    ctest "${args[@]}"
}

mkdir -p build
for s in $stages; do
    st=0
    case $s in
    main) run_stage main build "" "" || st=1 ;;
    # The installed-library test links an uninstrumented program against the instrumented
    # library, and the soak measures RSS (ASan quarantines freed memory): plain build only.
    # The chaos cases time faults against deadlines (1 s Redis commands): plain build only too.
    asan) run_stage asan build-asan "" "e2e|bench-smoke|k8s|js|install|soak|chaos" -DRINGSIDE_SANITIZE=address,undefined || st=1 ;;
    # clang: GCC's TSan does not model atomic_thread_fence, which the ring code relies on.
    # The fuzz replay is left out: its truncation inputs raise SIGBUS, which TSan intercepts.
    tsan) CC=clang run_stage tsan build-tsan "ipc" "bench-smoke|fuzz" -DRINGSIDE_SANITIZE=thread || st=1 ;;
    fuzz) CC=clang run_stage fuzz build-fuzz "fuzz" "" -DRINGSIDE_FUZZ=ON -DRINGSIDE_SANITIZE=address,undefined || st=1 ;;
    *) echo "check.sh: unknown stage '$s' (main asan tsan fuzz)" >&2; exit 2 ;;
    esac
    [ $st -eq 0 ] || status=1
    summary+=("$s=$([ $st -eq 0 ] && echo ok || echo FAILED)")
done
echo "==== check.sh: ${summary[*]}"
exit $status
