#!/usr/bin/env python3
"""agent.py — an example agent in Python using the `ringside` package (client-sdk/python).

Each cycle: status "working", a training task with progress and coloured output, then a wrapped
subprocess (its output streamed to the dashboard under a pty), then status "idle".

    pip install ./client-sdk/python      # once, from a built tree
    python3 examples/python/agent.py --shm-dir /tmp/rs --loop 0

Usage: agent.py [--agent A] [--project P] [--owner U] [--shm-dir D] [--loop N] [--delay-ms MS]
Without a sidecar (no ring directory) the agent still runs: one warning, nothing published.
"""
import argparse
import signal
import sys
import threading

import ringside

STEPS = ["load dataset", "tokenize", "train epoch 1", "train epoch 2", "evaluate", "save model"]
stop = threading.Event()


def cycle(agent: ringside.Agent, n: int, delay_ms: int) -> None:
    agent.status("working", f"training run {n}")
    # The task ends when the block does: completed, or failed/cancelled on an exception.
    with agent.task(f"{agent.agent_id[:40]}-{n}", f"Training run #{n}") as task:
        for i, what in enumerate(STEPS, 1):
            if stop.is_set():
                task.write("\x1b[33minterrupted\x1b[0m\r\n", "stderr")
                task.end("cancelled", 130)
                return
            task.progress(i, len(STEPS), what)
            task.write(f"\x1b[35m[{i}/{len(STEPS)}]\x1b[0m {what}\r\n")
            stop.wait(delay_ms / 1000.0)
        task.write("\x1b[1;32maccuracy 0.93\x1b[0m\r\n")
    # A command run as its own task: output streamed as it comes, outcome from its exit status.
    agent.run(f"{agent.agent_id[:40]}-{n}-report", [sys.executable, "-c",
              "print('\\x1b[36mreport:\\x1b[0m 6 steps, accuracy 0.93')"], title="write report")
    agent.status("idle", f"run {n} finished")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="Example Ringside agent (Python).")
    p.add_argument("--agent", default="python-agent")
    p.add_argument("--project", default="demo")
    p.add_argument("--owner")
    p.add_argument("--shm-dir")
    p.add_argument("--loop", type=int, default=1, help="cycles to run (0 = until a signal)")
    p.add_argument("--delay-ms", type=int, default=300)
    a = p.parse_args(argv)
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    with ringside.Agent(a.agent, a.project, owner=a.owner, shm_dir=a.shm_dir) as agent:
        n = 1
        while not stop.is_set() and (a.loop == 0 or n <= a.loop):
            cycle(agent, n, a.delay_ms)
            n += 1
        if stop.is_set():
            agent.status("cancelled", "stopped by signal")
    return 0


if __name__ == "__main__":
    sys.exit(main())
