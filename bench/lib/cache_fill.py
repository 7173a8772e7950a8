#!/usr/bin/env python3
"""RSS of the gateway holding N cached answers.

  cache_fill.py --url http://127.0.0.1:18081/v1/chat/completions --pid PID --n 100000
                --format BODY_WITH_%d --conc 64 --target LABEL --out rows.jsonl
                [--metrics-url URL] [-H 'Name: value']

Reads the gateway's RSS, then sends N distinct chat requests (body i = --format with %d = i:
every one is a miss that the gateway fetches from the upstream and stores) with wrk and
`fill.lua` (closed loop, --conc connections, stops once all N were answered), reads the RSS right
after and again after --settle seconds idle, then re-sends --sample random ones of the N and
counts `x-cache: HIT` answers (the share of the N still held) and the layers that answered.
Appends one row. Run it under `taskset -c <load cpu>`; loopback only.
"""
import argparse
import http.client
import json
import os
import random
import signal
import subprocess
import tempfile
import sys
import time
from urllib.parse import urlsplit

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import procstat  # noqa: E402
from measure import RssSampler, cache_counters  # noqa: E402

def rss(pid):
    return round(procstat.total(pid, lambda p: procstat.status_kib(p, "VmRSS")) / 1024, 1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--pid", type=int, required=True)
    ap.add_argument("--n", type=int, default=100000)
    ap.add_argument("--conc", type=int, default=64)
    ap.add_argument("--format", required=True, help="JSON body with one %%d")
    ap.add_argument("--settle", type=float, default=1.0)
    ap.add_argument("--sample", type=int, default=500)
    ap.add_argument("--max-seconds", type=int, default=120)
    ap.add_argument("--metrics-url", default="")
    ap.add_argument("-H", "--header", action="append", default=[])
    ap.add_argument("--target", required=True)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    u = urlsplit(a.url)
    if u.scheme != "http" or u.hostname not in {"127.0.0.1", "localhost", "::1"}:
        sys.exit("cache_fill: only http:// loopback targets are allowed")

    row = {"target": a.target, "scenario": "cache-fill", "kind": "fill", "n": a.n, "conc": a.conc}
    row["rss_before_mib"] = rss(a.pid)
    m0 = cache_counters(a.metrics_url) if a.metrics_url else None
    cmd = ["wrk", "-t1", f"-c{a.conc}", f"-d{a.max_seconds}s", "--timeout", "10s",
           "-s", os.path.join(HERE, "fill.lua")]
    for h in a.header:
        cmd += ["-H", h]
    cmd.append(a.url)
    done_file = os.path.join(tempfile.mkdtemp(prefix="bench-fill."), "done")
    env = dict(os.environ, FILL_N=str(a.n), FILL_FORMAT=a.format, FILL_SLACK=str(4 * a.conc),
               FILL_STOP="1", FILL_DONE_FILE=done_file)
    sampler = RssSampler(a.pid)
    sampler.start()
    cpu0 = procstat.total(a.pid, procstat.cpu_seconds)
    t0 = time.monotonic()
    p = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        while p.poll() is None and not os.path.exists(done_file):
            time.sleep(0.02)
        row["fill_s"] = round(time.monotonic() - t0, 2)
        if p.poll() is None:
            p.send_signal(signal.SIGINT)  # wrk: stop sleeping, print the summary
        stdout, stderr = p.communicate(timeout=30)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        if os.path.exists(done_file):
            os.unlink(done_file)
        os.rmdir(os.path.dirname(done_file))
    out = subprocess.CompletedProcess(cmd, p.returncode, stdout, stderr)
    row["fill_cpu_s"] = round(procstat.total(a.pid, procstat.cpu_seconds) - cpu0, 2)
    sampler.stop.set()
    sampler.join()
    row["rss_after_fill_mib"] = rss(a.pid)
    row["peak_rss_mib"] = round(max(sampler.peak, row["rss_after_fill_mib"]), 1)
    summary = next((json.loads(line[9:]) for line in out.stdout.splitlines() if line.startswith("WRK_JSON ")), None)
    if summary is None:
        row["skipped"] = f"wrk gave no summary (rc {out.returncode}): {(out.stderr or out.stdout).strip()[:300]}"
    else:
        row["requests"] = summary["requests"]
        row["errors"] = sum(summary[k] for k in ("err_connect", "err_read", "err_write", "err_status", "err_timeout"))
        row["fill_rps"] = round(summary["requests"] / row["fill_s"], 1) if row["fill_s"] else None
    if m0 is not None:
        m1 = cache_counters(a.metrics_url) or {}
        row["cache"] = {k: m1.get(k, 0) - m0.get(k, 0) for k in sorted(set(m0) | set(m1))}
    time.sleep(a.settle)
    row["rss_settled_mib"] = rss(a.pid)
    row["settle_s"] = a.settle

    # How many of the N are still held: re-send a random sample, count x-cache: HIT.
    headers = {"Content-Type": "application/json"}
    for h in a.header:
        k, _, v = h.partition(":")
        headers[k.strip()] = v.strip()
    conn = http.client.HTTPConnection(u.hostname, u.port or 80, timeout=10)
    hits, layers = 0, {}
    rnd = random.Random(1)
    for k in rnd.sample(range(a.n), min(a.sample, a.n)):
        conn.request("POST", u.path, body=(a.format % k).encode(), headers=headers)
        r = conn.getresponse()
        r.read()
        hits += r.getheader("x-cache", "") == "HIT"
        layer = r.getheader("x-cache-layer") or r.getheader("x-cache", "none")
        layers[layer] = layers.get(layer, 0) + 1
    conn.close()
    row["sample_layers"] = layers
    row["sample"] = min(a.sample, a.n)
    row["sample_hits"] = hits
    row["held_est"] = round(a.n * hits / row["sample"]) if row["sample"] else None
    with open(a.out, "a") as f:
        f.write(json.dumps(row) + "\n")
    print(f"  {a.target}: {a.n} distinct requests in {row['fill_s']} s ({row.get('errors')} errors); RSS "
          f"{row['rss_before_mib']} -> {row['rss_after_fill_mib']} MiB ({row['rss_settled_mib']} after "
          f"{a.settle:g} s); {hits}/{row['sample']} sampled still cached", file=sys.stderr)


if __name__ == "__main__":
    main()
