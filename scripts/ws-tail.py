#!/usr/bin/python3
"""Prints the events of a Ringside WebSocket, one compact line each (a terminal 'dashboard').

usage: ws-tail.py [--seconds N] [--raw] URL
"""
import argparse
import asyncio
import json
import sys

import websockets


def line(m):
    t = m.get("type")
    if t == "snapshot":
        agents = ", ".join("%s=%s" % (a["agent_id"], a.get("status")) for a in m["agents"])
        return "snapshot  seq=%s agents: %s" % (m.get("seq"), agents or "(none yet)")
    if t == "agent_status":
        return "status    %-14s %s -> %s  %s" % (m["agent_id"], m.get("old_status"),
                                                 m["new_status"], m.get("detail", ""))
    if t == "progress":
        pct = m.get("progress_percent")
        eta = m.get("eta_seconds")
        return "progress  %-14s %-10s %3s%% step %s/%s eta %ss  %s" % (
            m["agent_id"], m["task_id"], "?" if pct is None else int(pct), m["current_step"],
            m["total_steps"], "?" if eta is None else round(eta, 1), m.get("message", ""))
    if t in ("task_started", "task_ended"):
        extra = m.get("title", "") if t == "task_started" else "%s exit=%s" % (
            m["outcome"], m["exit_code"])
        return "%-9s %-14s %-10s %s" % (t.replace("task_", ""), m["agent_id"], m["task_id"],
                                        extra)
    return json.dumps(m)


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("url")
    ap.add_argument("--seconds", type=float, default=0, help="stop after N seconds (0: never)")
    ap.add_argument("--raw", action="store_true", help="print the JSON as received")
    a = ap.parse_args()

    async def tail():
        async with websockets.connect(a.url, max_size=None) as ws:
            async for msg in ws:
                if isinstance(msg, bytes):
                    continue
                m = json.loads(msg)
                if m.get("type") == "heartbeat":
                    await ws.send('{"type":"pong"}')
                    continue
                print(msg if a.raw else line(m), flush=True)

    try:
        if a.seconds > 0:
            await asyncio.wait_for(tail(), a.seconds)
        else:
            await tail()
    except asyncio.TimeoutError:
        pass
    except (OSError, websockets.exceptions.WebSocketException) as e:
        print("ws-tail: %s: %s" % (a.url, e), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
