#!/usr/bin/env python3
"""Measure one scenario against one target and append one JSON row per concurrency.

  measure.py --target LABEL --scenario NAME --kind wrk|sse --url URL --body JSON
             --concs "1 16 64" --duration 5 [--pid PID] [--warmup 2] [--expect TEXT]
             [-H 'Name: value' ...] --out rows.jsonl

First a smoke test (one request through http.client; the answer must be 2xx and contain
--expect, default '"choices"' for wrk and 'data:' for sse). If it fails, one row with
"skipped" and the reason is written and the exit status is 0, so one broken scenario does
not stop the run. Then, per concurrency:
  wrk: `wrk -t1 -c<c> -d<duration>s --timeout 10s -s post.lua` (closed loop, keep-alive);
  sse: `sse_probe.py --conc <c> --duration <duration>` (closed loop, keep-alive).
Around each step it reads, from /proc: the CPU seconds of --pid's process tree (the target:
gateway, nginx, or the mock for `direct`), each core's busy share (/proc/stat), and it samples
the tree's RSS every 0.1 s (step peak). With --aux-pid (Redis) it also reads that process's CPU
seconds; with --metrics-url (the gateway's /metrics) it reads the cache counters before and after
each step (outside the CPU window), so a row says which cache layer answered. The load generator
inherits this process's CPU affinity: start it with `taskset -c <load cpu>`.
Loopback targets only.
"""
import argparse
import http.client
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from urllib.parse import urlsplit

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import procstat  # noqa: E402

LOOPBACK = {"127.0.0.1", "localhost", "::1"}
CHILD = []  # the running load generator, stopped with us on SIGTERM/SIGINT


def on_signal(signum, _frame):
    for c in CHILD:
        if c.poll() is None:
            c.terminate()
    sys.exit(128 + signum)


def run_child(cmd, env=None):
    p = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    CHILD.append(p)
    try:
        out, err = p.communicate()
    finally:
        CHILD.remove(p)
    return subprocess.CompletedProcess(cmd, p.returncode, out, err)


def core_jiffies():
    """{cpu index: (busy, total)} from /proc/stat."""
    out = {}
    with open("/proc/stat") as f:
        for line in f:
            if not line.startswith("cpu") or line.startswith("cpu "):
                continue
            name, *vals = line.split()
            v = [int(x) for x in vals]
            idle = v[3] + (v[4] if len(v) > 4 else 0)  # idle + iowait
            total = sum(v[:8])  # guest time is already inside user/nice
            out[int(name[3:])] = (total - idle, total)
    return out


def busy_pct(before, after, cpu):
    if cpu not in before or cpu not in after:
        return None
    db = after[cpu][0] - before[cpu][0]
    dt = after[cpu][1] - before[cpu][1]
    return round(100.0 * db / dt, 1) if dt > 0 else None


class RssSampler(threading.Thread):
    def __init__(self, pid, period=0.1):
        super().__init__(daemon=True)
        self.pid, self.period, self.peak = pid, period, 0.0
        self.stop = threading.Event()

    def sample(self):
        kib = procstat.total(self.pid, lambda p: procstat.status_kib(p, "VmRSS"))
        self.peak = max(self.peak, kib / 1024)

    def run(self):
        while not self.stop.is_set():
            self.sample()
            self.stop.wait(self.period)


def cache_counters(metrics_url):
    """{'l1_hit': n, 'l1_miss': n, 'l2_hit': n, 'l2_miss': n} from the gateway's /metrics."""
    out = {}
    try:
        with urllib.request.urlopen(metrics_url, timeout=5) as r:
            text = r.read().decode()
    except Exception:  # noqa: BLE001
        return None
    for line in text.splitlines():
        if line.startswith("ai_gateway_cache_requests_total{"):
            labels, _, value = line.rpartition(" ")
            layer = labels.split('layer="', 1)[1].split('"', 1)[0]
            result = labels.split('result="', 1)[1].split('"', 1)[0]
            out[f"{layer}_{result}"] = out.get(f"{layer}_{result}", 0) + int(float(value))
    return out


def smoke(url, body, headers, expect, timeout=20.0):
    """One request; return None if fine, else the reason."""
    u = urlsplit(url)
    try:
        conn = http.client.HTTPConnection(u.hostname, u.port or 80, timeout=timeout)
        h = {"Content-Type": "application/json"}
        h.update(headers)
        conn.request("POST", u.path, body=body.encode(), headers=h)
        r = conn.getresponse()
        data = r.read()
        conn.close()
    except Exception as e:  # noqa: BLE001
        return f"{type(e).__name__}: {e}"
    if not 200 <= r.status < 300:
        return f"status {r.status}: {data[:300].decode('utf-8', 'replace')}"
    if expect.encode() not in data:
        return f"answer lacks {expect!r}: {data[:300].decode('utf-8', 'replace')}"
    return None


WRK_SCRIPT = "post.lua"
WRK_ENV = {}


def run_wrk(url, body, headers, conc, duration):
    cmd = ["wrk", "-t1", f"-c{conc}", f"-d{max(1, round(duration))}s", "--timeout", "10s",
           "-s", os.path.join(HERE, WRK_SCRIPT)]
    for k, v in headers.items():
        cmd += ["-H", f"{k}: {v}"]
    cmd.append(url)
    env = dict(os.environ, BENCH_BODY=body, **WRK_ENV)
    out = run_child(cmd, env=env)
    for line in out.stdout.splitlines():
        if line.startswith("WRK_JSON "):
            w = json.loads(line[len("WRK_JSON "):])
            n, secs = w["requests"], w["duration_us"] / 1e6
            errs = sum(w[k] for k in ("err_connect", "err_read", "err_write", "err_status", "err_timeout"))
            return {"requests": n, "rps": round(n / secs, 1) if secs else 0.0,
                    "p50_ms": w["lat_p50_us"] / 1000, "p99_ms": w["lat_p99_us"] / 1000,
                    "max_ms": w["lat_max_us"] / 1000, "errors": errs}
    raise RuntimeError(f"wrk gave no summary (rc {out.returncode}): {(out.stderr or out.stdout).strip()[:300]}")


def run_sse(url, body, headers, conc, duration):
    cmd = [sys.executable, os.path.join(HERE, "sse_probe.py"), "--url", url, "--body", body,
           "--conc", str(conc), "--duration", str(duration)]
    for k, v in headers.items():
        cmd += ["-H", f"{k}: {v}"]
    out = run_child(cmd)
    for line in out.stdout.splitlines():
        if line.startswith("SSE_JSON "):
            s = json.loads(line[len("SSE_JSON "):])
            return {"requests": s["requests"], "rps": s["rps"],
                    "ttfb_p50_ms": s["ttfb_p50_ms"], "ttfb_p99_ms": s["ttfb_p99_ms"],
                    "p50_ms": s["total_p50_ms"], "p99_ms": s["total_p99_ms"],
                    "errors": s["errors"], "first_error": s["first_error"],
                    "events_per_response": s["events_per_response"],
                    "content_events": s.get("content_events"),
                    "no_terminator": s.get("no_terminator", 0)}
    raise RuntimeError(f"sse_probe gave no summary (rc {out.returncode}): {out.stderr.strip()[:300]}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--target", required=True)
    ap.add_argument("--scenario", required=True)
    ap.add_argument("--kind", choices=["wrk", "sse"], required=True)
    ap.add_argument("--url", required=True)
    ap.add_argument("--body", required=True)
    ap.add_argument("--concs", default="1 16 64")
    ap.add_argument("--duration", type=float, default=5)
    ap.add_argument("--warmup", type=float, default=2, help="seconds at c=16 before the first step, 0 = none")
    ap.add_argument("--pid", type=int, default=0, help="root pid of the target's process tree")
    ap.add_argument("--wrk-script", default="post.lua", help="wrk Lua script in lib/ (fill.lua: distinct bodies)")
    ap.add_argument("--wrk-env", action="append", default=[], help="NAME=value for the wrk script")
    ap.add_argument("--aux-pid", type=int, default=0, help="another process whose CPU is recorded (Redis)")
    ap.add_argument("--metrics-url", default="", help="the gateway's /metrics, for cache counters")
    ap.add_argument("--gw-cpu", type=int, default=0)
    ap.add_argument("--load-cpu", type=int, default=1)
    ap.add_argument("--expect", default=None)
    ap.add_argument("-H", "--header", action="append", default=[])
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    global WRK_SCRIPT
    WRK_SCRIPT = a.wrk_script
    WRK_ENV.update(kv.split("=", 1) for kv in a.wrk_env)

    u = urlsplit(a.url)
    if u.scheme != "http" or u.hostname not in LOOPBACK:
        sys.exit("measure: only http:// loopback targets are allowed")
    headers = {}
    for h in a.header:
        k, _, v = h.partition(":")
        headers[k.strip()] = v.strip()
    expect = a.expect or ('"choices"' if a.kind == "wrk" else "data:")
    sbody = a.body
    base_row = {"target": a.target, "scenario": a.scenario, "kind": a.kind,
                "path": u.path, "duration_s": a.duration}
    if a.wrk_script != "post.lua":
        base_row["wrk_script"] = a.wrk_script

    def emit(row):
        with open(a.out, "a") as f:
            f.write(json.dumps(row) + "\n")

    why = smoke(a.url, sbody, headers, expect)
    if why is not None:
        print(f"  {a.target}/{a.scenario}: smoke test failed, skipped: {why}", file=sys.stderr)
        emit(dict(base_row, skipped=why))
        return

    step = run_wrk if a.kind == "wrk" else run_sse
    if a.warmup > 0:
        step(a.url, a.body, headers, 16, a.warmup)

    for c in [int(x) for x in a.concs.split()]:
        sampler = None
        if a.pid:
            sampler = RssSampler(a.pid)
            sampler.sample()
            sampler.start()
        m0 = cache_counters(a.metrics_url) if a.metrics_url else None
        cpu0 = procstat.total(a.pid, procstat.cpu_seconds) if a.pid else None
        aux0 = procstat.cpu_seconds(a.aux_pid) if a.aux_pid else None
        j0, t0 = core_jiffies(), time.monotonic()
        try:
            r = step(a.url, a.body, headers, c, a.duration)
        except RuntimeError as e:
            print(f"  {a.target}/{a.scenario} c={c}: {e}", file=sys.stderr)
            emit(dict(base_row, conc=c, skipped=str(e)))
            continue
        finally:
            if sampler:
                sampler.stop.set()
                sampler.join()
        wall = time.monotonic() - t0
        j1 = core_jiffies()
        cpu1 = procstat.total(a.pid, procstat.cpu_seconds) if a.pid else None
        aux1 = procstat.cpu_seconds(a.aux_pid) if a.aux_pid else None
        m1 = cache_counters(a.metrics_url) if a.metrics_url else None
        cpu = round(cpu1 - cpu0, 3) if a.pid else None
        n = r["requests"]
        row = dict(base_row, conc=c, **r)
        if aux0 is not None:
            row["aux_cpu_s"] = round(aux1 - aux0, 3)
            row["aux_cpu_ms_per_req"] = round((aux1 - aux0) / n * 1000, 4) if n else None
        if m0 is not None and m1 is not None:
            row["cache"] = {k: m1.get(k, 0) - m0.get(k, 0) for k in sorted(set(m0) | set(m1))}
        row.update({
            "wall_s": round(wall, 2),
            "cpu_s": cpu,
            "cpu_s_per_1k": round(cpu / n * 1000, 4) if cpu is not None and n else None,
            "req_per_cpu_s": round(n / cpu, 1) if cpu else None,
            "target_cpu_pct": round(100.0 * cpu / wall, 1) if cpu is not None and wall > 0 else None,
            "gw_core_busy_pct": busy_pct(j0, j1, a.gw_cpu),
            "load_core_busy_pct": busy_pct(j0, j1, a.load_cpu),
            "peak_rss_mib": round(sampler.peak, 1) if sampler else None,
        })
        emit(row)
        extra = f" TTFB p50 {r['ttfb_p50_ms']:.2f} ms" if a.kind == "sse" else ""
        print(f"  {a.target:<12} {a.scenario:<16} c={c:<3} {r['rps']:>9.0f}/s  p50 {r['p50_ms']:.3f} ms"
              f"  p99 {r['p99_ms']:.3f} ms{extra}  errors {r['errors']}", file=sys.stderr)


if __name__ == "__main__":
    main()
