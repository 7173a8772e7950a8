#!/usr/bin/env python3
"""Redis commands per gateway request, from `redis-cli info commandstats`.

  redis_calls.py --url URL --body JSON --redis-port P [--redis-port P2 ...] --n 1000 --target LABEL --out rows.jsonl
                 [-H 'Name: value' ...] [--name redis-calls] [--format BODY_WITH_%d]

`CONFIG RESETSTAT`, then N requests one after the other on one keep-alive connection, then
--settle seconds (writes the gateway does after the answer, in the background, land), then
`INFO commandstats`: calls of each command divided by N. With --format, request i sends the
body --format % i instead of --body (distinct requests, e.g. answers that are in L2). Appends one
row. Several --redis-port (the nodes of a Redis Cluster): their counts are added up. Loopback only.
"""
import argparse
import http.client
import json
import subprocess
import sys
import time
from urllib.parse import urlsplit


def commandstats(ports):
    calls = {}
    for port in ports:
        for k, v in commandstats_one(port).items():
            calls[k] = calls.get(k, 0) + v
    return calls


def commandstats_one(port):
    out = subprocess.run(["redis-cli", "-h", "127.0.0.1", "-p", str(port), "info", "commandstats"],
                         capture_output=True, text=True, check=True).stdout
    calls = {}
    for line in out.splitlines():
        if line.startswith("cmdstat_"):
            name, _, rest = line.partition(":")
            fields = dict(kv.split("=", 1) for kv in rest.strip().split(","))
            calls[name[len("cmdstat_"):]] = int(fields["calls"])
    return calls


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--body", required=True)
    ap.add_argument("-H", "--header", action="append", default=[])
    ap.add_argument("--redis-port", type=int, action="append", required=True)
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--settle", type=float, default=0.5)
    ap.add_argument("--target", required=True)
    ap.add_argument("--name", default="redis-calls")
    ap.add_argument("--format", default=None, help="JSON body with one %%d: request i sends format %% i")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    u = urlsplit(a.url)
    if u.scheme != "http" or u.hostname not in {"127.0.0.1", "localhost", "::1"}:
        sys.exit("redis_calls: only http:// loopback targets are allowed")
    headers = {"Content-Type": "application/json"}
    for h in a.header:
        k, _, v = h.partition(":")
        headers[k.strip()] = v.strip()
    conn = http.client.HTTPConnection(u.hostname, u.port or 80, timeout=10)
    # One request first (connections, script loading), outside the count.
    conn.request("POST", u.path, body=a.body.encode(), headers=headers)
    conn.getresponse().read()
    time.sleep(a.settle)
    for port in a.redis_port:
        subprocess.run(["redis-cli", "-h", "127.0.0.1", "-p", str(port), "config", "resetstat"],
                       capture_output=True, check=True)
    before = commandstats(a.redis_port)
    status = {}
    layers = {}
    for i in range(a.n):
        body = a.format % i if a.format else a.body
        conn.request("POST", u.path, body=body.encode(), headers=headers)
        r = conn.getresponse()
        r.read()
        status[r.status] = status.get(r.status, 0) + 1
        layer = r.getheader("x-cache-layer") or r.getheader("x-cache")
        if layer:
            layers[layer] = layers.get(layer, 0) + 1
    conn.close()
    time.sleep(a.settle)
    after = commandstats(a.redis_port)
    calls = {k: after.get(k, 0) - before.get(k, 0) for k in after}
    # Our own INFO / CONFIG calls are not the gateway's.
    calls = {k: v for k, v in calls.items() if v > 0 and not k.startswith(("info", "config"))}
    row = {"target": a.target, "scenario": a.name, "kind": "redis", "n": a.n,
           "status": {str(k): v for k, v in status.items()}, "cache_layers": layers, "calls": calls,
           "per_request": {k: round(v / a.n, 3) for k, v in sorted(calls.items())}}
    with open(a.out, "a") as f:
        f.write(json.dumps(row) + "\n")
    print(f"  {a.target}: Redis commands per request over {a.n} requests: "
          + ", ".join(f"{k} {v}" for k, v in row["per_request"].items())
          + f"; statuses {row['status']}" + (f"; x-cache {layers}" if layers else ""), file=sys.stderr)


if __name__ == "__main__":
    main()
