#!/bin/sh
# shell-agent.sh — an example agent written in POSIX sh, publishing through ringside-pub.
#
# Usage: examples/shell-agent.sh [--agent A] [--project P] [--shm-dir D] [--loop N] [--delay S]
# ringside-pub is taken from $RINGSIDE_BIN (a directory) or PATH.  Identity and ring directory can
# also come from RINGSIDE_AGENT, RINGSIDE_PROJECT, RINGSIDE_SHM_DIR (what ringside-pub reads).
set -eu

: "${RINGSIDE_AGENT:=shell-agent}"
: "${RINGSIDE_PROJECT:=demo}"
loops=1
delay=0.3

while [ $# -gt 0 ]; do
    case "$1" in
    --agent) RINGSIDE_AGENT=$2; shift 2 ;;
    --project) RINGSIDE_PROJECT=$2; shift 2 ;;
    --shm-dir) RINGSIDE_SHM_DIR=$2; export RINGSIDE_SHM_DIR; shift 2 ;;
    --loop) loops=$2; shift 2 ;;
    --delay) delay=$2; shift 2 ;;
    -h|--help) sed -n '2,6p' "$0"; exit 0 ;;
    *) echo "shell-agent.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
    esac
done
export RINGSIDE_AGENT RINGSIDE_PROJECT

if [ -n "${RINGSIDE_BIN:-}" ]; then
    PATH=$RINGSIDE_BIN:$PATH
fi
pub() { ringside-pub "$@"; }

esc=$(printf '\033')
n=1
while [ "$loops" -eq 0 ] || [ "$n" -le "$loops" ]; do
    task="$RINGSIDE_AGENT-$n"
    pub status working "deploying release $n"
    pub task-start "$task" "Deploy #$n"
    total=5
    step=1
    for what in "render manifests" "push image" "apply to staging" "smoke tests" "promote"; do
        pub progress "$task" "$step" "$total" "$what"
        # Terminal output: stdin of `ringside-pub term` (binary-safe, ANSI colours kept).
        printf '%s[36m[%d/%d]%s[0m %s\r\n' "$esc" "$step" "$total" "$esc" "$what" | pub term "$task"
        sleep "$delay"
        step=$((step + 1))
    done
    printf '%s[32mdeployed%s[0m\r\n' "$esc" "$esc" | pub term "$task"
    pub task-end "$task" completed 0
    pub status idle "release $n deployed"
    n=$((n + 1))
done
