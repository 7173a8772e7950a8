#!/usr/bin/env python3
"""Startup-to-ready time and idle RSS of the gateway.

  startup.py --runs 5 --port 18081 --gw-cpu 0 --out rows.jsonl -- BIN ARG...

Each run: spawn BIN ARG... (pinned to --gw-cpu through sched_setaffinity in the child, so
no taskset exec is timed), then poll `GET /health` on 127.0.0.1:PORT in a tight loop (new
connection each try, no sleep) until the first 200. Ready time = spawn to that 200. Right
then it reads the process's VmRSS ("RSS at ready"), and again after --settle seconds idle.
The process is then stopped with SIGTERM (SIGKILL after 5 s) by its pid. Run this under
`taskset -c <load cpu>` so the poll loop does not share the gateway's core.
Writes one row with the median, min and max, and every run's figures.
"""
import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import procstat  # noqa: E402

REQ = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"


def health_ok(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0) as s:
            s.sendall(REQ)
            data = s.recv(64)
            return data.startswith(b"HTTP/1.1 200")
    except OSError:
        return False


def rss_mib(pid):
    return procstat.total(pid, lambda p: procstat.status_kib(p, "VmRSS")) / 1024


def port_busy(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


CURRENT = []  # the gateway being started, stopped with us on SIGTERM/SIGINT


def on_signal(signum, _frame):
    for p in CURRENT:
        if p.poll() is None:
            p.kill()
    sys.exit(128 + signum)


def stop(p):
    p.send_signal(signal.SIGTERM)
    try:
        p.wait(5)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--gw-cpu", type=int, default=0)
    ap.add_argument("--settle", type=float, default=1.0)
    ap.add_argument("--timeout", type=float, default=10.0)
    ap.add_argument("--log", default=os.devnull, help="append the gateway's output here")
    ap.add_argument("--cwd", default=None, help="working directory of the gateway")
    ap.add_argument("--out", required=True)
    ap.add_argument("--scenario", default="startup", help="row name (e.g. startup-100-models)")
    ap.add_argument("--models", type=int, default=None, help="models in the configuration (recorded)")
    ap.add_argument("cmd", nargs=argparse.REMAINDER)
    a = ap.parse_args()
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    cmd = a.cmd[1:] if a.cmd and a.cmd[0] == "--" else a.cmd
    if not cmd:
        sys.exit("startup.py: no command")

    ready_ms, rss_ready, rss_settled, errors = [], [], [], []
    with open(a.log, "ab") as log:
        for i in range(a.runs):
            if port_busy(a.port):
                errors.append(f"run {i}: port {a.port} busy before start")
                break
            t0 = time.perf_counter()
            p = subprocess.Popen(cmd, stdout=log, stderr=log, stdin=subprocess.DEVNULL, cwd=a.cwd,
                                 preexec_fn=lambda: os.sched_setaffinity(0, {a.gw_cpu}))
            CURRENT[:] = [p]
            try:
                deadline = t0 + a.timeout
                ok = False
                while time.perf_counter() < deadline:
                    if health_ok(a.port):
                        ok = True
                        break
                    if p.poll() is not None:
                        break
                t1 = time.perf_counter()
                if not ok:
                    errors.append(f"run {i}: not ready (exit {p.poll()}) after {t1 - t0:.1f} s")
                    continue
                ready_ms.append((t1 - t0) * 1000)
                rss_ready.append(rss_mib(p.pid))
                if a.settle > 0 and i == a.runs - 1:
                    time.sleep(a.settle)
                    rss_settled.append(rss_mib(p.pid))
            finally:
                stop(p)

    def stats(v, nd):
        if not v:
            return None, None, None
        return round(statistics.median(v), nd), round(min(v), nd), round(max(v), nd)

    med, lo, hi = stats(ready_ms, 2)
    rmed, rlo, rhi = stats(rss_ready, 1)
    row = {"target": "gateway", "scenario": a.scenario, "kind": "startup", "models": a.models,
           "runs": len(ready_ms),
           "ready_ms_median": med, "ready_ms_min": lo, "ready_ms_max": hi,
           "ready_ms_all": [round(x, 2) for x in ready_ms],
           "rss_ready_mib_median": rmed, "rss_ready_mib_min": rlo, "rss_ready_mib_max": rhi,
           "rss_settled_mib": round(rss_settled[0], 1) if rss_settled else None,
           "settle_s": a.settle, "errors": errors}
    with open(a.out, "a") as f:
        f.write(json.dumps(row) + "\n")
    print(f"  {a.scenario} to ready: median {med} ms (min {lo}, max {hi}, {len(ready_ms)} runs); "
          f"RSS at ready {rmed} MiB" + (f"; errors: {errors}" if errors else ""), file=sys.stderr)


if __name__ == "__main__":
    main()
