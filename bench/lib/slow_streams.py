#!/usr/bin/env python3
"""Many slow streams held open at once through the gateway.

  slow_streams.py --host 127.0.0.1 --port 18081 --pid PID --n 10000 --body JSON
                  --target LABEL --out rows.jsonl [-H 'Name: value'] [--ramp 3]

Opens --n streaming chat requests (one connection each, HTTP/1.1, `connection: close`) spread
over --ramp seconds, and keeps every one open until its `data: [DONE]` (the upstream is a mock
with --latency between words, so each stream lasts ~21 x latency). Meanwhile samples the
gateway's RSS every 0.1 s. Appends one row: streams opened, completed with their terminator and
all events, errors (connect, status, cut short), the most streams open at once, peak RSS, the
gateway's CPU seconds, time to first byte p50/p99. Loopback only; needs a file-descriptor limit
above --n (run.sh raises it).
"""
import argparse
import asyncio
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import procstat  # noqa: E402
from measure import RssSampler  # noqa: E402


def pct(xs, q):
    if not xs:
        return None
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


async def one(args, request, state, delay):
    await asyncio.sleep(delay)
    t0 = time.monotonic()
    try:
        reader, writer = await asyncio.open_connection(args.host, args.port)
    except OSError as e:
        state["connect_errors"] += 1
        state["last_error"] = repr(e)
        return
    state["open"] += 1
    state["max_open"] = max(state["max_open"], state["open"])
    try:
        writer.write(request)
        await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        if status != 200:
            state["status_errors"] += 1
            state["last_error"] = head[:200].decode(errors="replace")
            return
        first = True
        seen = b""
        events = 0
        while True:
            chunk = await reader.read(65536)
            if not chunk:
                break
            if first:
                state["ttfb"].append((time.monotonic() - t0) * 1000)
                first = False
            seen = seen[-32:] + chunk
            events += chunk.count(b"data: ")
            if b"data: [DONE]" in seen:
                break
        if b"data: [DONE]" in seen and events >= args.events:
            state["completed"] += 1
        else:
            state["cut_short"] += 1
            state["last_error"] = f"{events} events, no terminator" if b"[DONE]" not in seen else f"{events} events"
    except (OSError, asyncio.IncompleteReadError, ValueError, IndexError) as e:
        state["read_errors"] += 1
        state["last_error"] = repr(e)
    finally:
        state["open"] -= 1
        writer.close()


async def run(args, request):
    state = {"open": 0, "max_open": 0, "completed": 0, "connect_errors": 0, "status_errors": 0,
             "read_errors": 0, "cut_short": 0, "ttfb": [], "last_error": None}
    tasks = [one(args, request, state, args.ramp * i / args.n) for i in range(args.n)]
    await asyncio.gather(*tasks)
    return state


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--pid", type=int, required=True)
    ap.add_argument("--n", type=int, default=10000)
    ap.add_argument("--ramp", type=float, default=3.0)
    ap.add_argument("--events", type=int, default=21, help="events a complete stream has")
    ap.add_argument("--body", required=True)
    ap.add_argument("--target", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("-H", dest="headers", action="append", default=[])
    args = ap.parse_args()
    body = args.body.encode()
    extra = "".join(f"{h}\r\n" for h in args.headers)
    request = (f"POST /v1/chat/completions HTTP/1.1\r\nhost: {args.host}\r\n"
               f"content-type: application/json\r\ncontent-length: {len(body)}\r\n"
               f"connection: close\r\n{extra}\r\n").encode() + body
    rss_before = procstat.total(args.pid, lambda p: procstat.status_kib(p, "VmRSS")) / 1024
    cpu0 = procstat.total(args.pid, procstat.cpu_seconds)
    sampler = RssSampler(args.pid)
    sampler.start()
    t0 = time.monotonic()
    state = asyncio.run(run(args, request))
    took = time.monotonic() - t0
    sampler.stop.set()
    sampler.join()
    sampler.sample()
    cpu1 = procstat.total(args.pid, procstat.cpu_seconds)
    errors = state["connect_errors"] + state["status_errors"] + state["read_errors"] + state["cut_short"]
    row = {"target": args.target, "scenario": "slow-streams", "kind": "slow-streams", "n": args.n,
           "ramp_s": args.ramp, "took_s": round(took, 2), "completed": state["completed"],
           "errors": errors, "connect_errors": state["connect_errors"],
           "status_errors": state["status_errors"], "read_errors": state["read_errors"],
           "cut_short": state["cut_short"], "max_open": state["max_open"],
           "rss_before_mib": round(rss_before, 1), "peak_rss_mib": round(sampler.peak, 1),
           "cpu_s": round(cpu1 - cpu0, 2),
           "ttfb_p50_ms": pct(state["ttfb"], 0.5), "ttfb_p99_ms": pct(state["ttfb"], 0.99),
           "last_error": state["last_error"]}
    with open(args.out, "a") as f:
        f.write(json.dumps(row) + "\n")
    print(json.dumps(row))


if __name__ == "__main__":
    main()
