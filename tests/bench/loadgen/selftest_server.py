#!/usr/bin/python3
"""Checks ringside-loadgen against an independent WebSocket server (python3-websockets).

The server here is a trivial broadcaster written only for this test: it sends a snapshot first,
then -- once every expected client is connected -- COUNT agent_status events (every third one
fragmented into three frames), application heartbeats and protocol pings interleaved, or, on
/ws/terminal/*, binary frames carrying the byte pattern k % 251 (some fragmented).  The loadgen
must count exactly what was sent, answer every ping (the server closes clients that miss pongs)
and every heartbeat, and report a latency for every event.

usage: selftest_server.py LOADGEN_BINARY [--conns N] [--count N] [--rate R]
exit 0 on success; prints the loadgen's JSON.
"""
import argparse
import asyncio
import json
import sys
import time

import websockets

EVENT_FMT = ('{{"type":"agent_status","agent_id":"a{a}","project_id":"p1","old_status":"idle",'
             '"new_status":"working","detail":"n{n}","timestamp":"2026-01-01T00:00:00.000Z",'
             '"ts_ns":{ts},"seq":{n},"epoch":"e1"}}')


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("loadgen")
    ap.add_argument("--conns", type=int, default=200)
    ap.add_argument("--count", type=int, default=50)
    ap.add_argument("--rate", type=float, default=100.0)
    ap.add_argument("--term-bytes", type=int, default=300000)
    args = ap.parse_args()

    events_clients = set()
    term_clients = set()
    pongs = {"app": 0}
    all_in = asyncio.Event()

    async def handler(ws, path):
        if path.startswith("/ws/terminal/"):
            await ws.send('{"type":"terminal","task_id":"t1","scrollback_bytes":0}')
            term_clients.add(ws)
        else:
            await ws.send('{"type":"snapshot","epoch":"e1","seq":0,"agents":[{"agent_id":"a0",'
                          '"ts_ns":1}]}')
            events_clients.add(ws)
        if len(events_clients) + len(term_clients) >= args.conns:
            all_in.set()
        try:
            async for msg in ws:
                if msg == '{"type":"pong"}':
                    pongs["app"] += 1
        except websockets.ConnectionClosed:
            pass
        finally:
            events_clients.discard(ws)
            term_clients.discard(ws)

    async def events_run(port):
        proc = await asyncio.create_subprocess_exec(
            args.loadgen, "--url", f"ws://127.0.0.1:{port}/ws/events", "--conns",
            str(args.conns), "--duration", "20", "--connect-rate", "2000", "--expect",
            str(args.count), "--threads", "2", stdout=asyncio.subprocess.PIPE)
        await asyncio.wait_for(all_in.wait(), 20)
        period = 1.0 / args.rate
        t0 = time.monotonic()
        for n in range(args.count):
            msg = EVENT_FMT.format(a=n % 7, n=n, ts=time.time_ns())
            if n % 3 == 1:
                third = len(msg) // 3
                parts = [msg[:third], msg[third:2 * third], msg[2 * third:]]
                await asyncio.gather(*(c.send(iter(parts)) for c in list(events_clients)))
            else:
                websockets.broadcast(events_clients, msg)
            if n % 10 == 5:
                websockets.broadcast(events_clients, '{"type":"heartbeat","timestamp":"x"}')
            await asyncio.sleep(max(0.0, t0 + (n + 1) * period - time.monotonic()))
        out, _ = await asyncio.wait_for(proc.communicate(), 30)
        return proc.returncode, json.loads(out)

    async def term_run(port):
        all_in.clear()
        proc = await asyncio.create_subprocess_exec(
            args.loadgen, "--url", f"ws://127.0.0.1:{port}/ws/terminal/t1", "--conns", "3",
            "--duration", "20", "--expect-bytes", str(args.term_bytes), "--verify-pattern",
            stdout=asyncio.subprocess.PIPE)
        args.conns = 3
        await asyncio.wait_for(all_in.wait(), 20)
        pattern = bytes(k % 251 for k in range(251 * 17))
        sent = 0
        while sent < args.term_bytes:
            n = min(4096, args.term_bytes - sent)
            chunk = (pattern[sent % 251:] + pattern)[:n]
            if (sent // 4096) % 4 == 3:
                await asyncio.gather(*(c.send(iter([chunk[:100], chunk[100:]]))
                                       for c in list(term_clients)))
            else:
                await asyncio.gather(*(c.send(chunk) for c in list(term_clients)))
            sent += n
        out, _ = await asyncio.wait_for(proc.communicate(), 30)
        return proc.returncode, json.loads(out)

    async with websockets.serve(handler, "127.0.0.1", 0, ping_interval=0.2, ping_timeout=2,
                                max_queue=64, compression=None) as server:
        port = server.sockets[0].getsockname()[1]
        rc, res = await events_run(port)
        print(json.dumps(res, indent=1))
        ok = True

        def check(cond, what):
            nonlocal ok
            if not cond:
                print("FAIL:", what, file=sys.stderr)
                ok = False

        check(rc == 0, "loadgen exit 0")
        check(res["connected"] == res["conns"], "all connected")
        check(res["events"] == args.conns * args.count, "every event counted")
        check(res["messages"]["snapshot"] == args.conns, "one snapshot each")
        check(res["messages"]["fragmented"] >= args.conns * (args.count // 3), "fragments joined")
        check(res["latency_us"]["count"] == res["events"], "a latency per event")
        check(res["ts_missing"] == 0, "ts_ns found in every event")
        check(res["protocol_errors"] == 0 and res["closed_by_server"] == 0, "no errors/closes")
        check(res["app_pongs_sent"] == res["messages"]["heartbeat"], "every heartbeat answered")
        check(res["all_expected"], "stopped early when all expected arrived")
        check(res["pings"] > 0 and res["pongs_sent"] == res["pings"], "every ping answered")

        rc, res = await term_run(port)
        print(json.dumps(res, indent=1))
        check(rc == 0, "terminal loadgen exit 0")
        check(res["binary_bytes"] == 3 * args.term_bytes, "every terminal byte counted")
        check(res["pattern_errors"] == 0, "terminal bytes exact")
        check(res["messages"]["fragmented"] > 0, "binary fragments handled")
        await asyncio.sleep(0.3)  # let the server count the last app pongs it was sent
        check(pongs["app"] > 0, "server received app pongs")
        return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
