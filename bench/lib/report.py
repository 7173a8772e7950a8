#!/usr/bin/env python3
"""Markdown report from one bench run.

  report.py RUN_DIR          reads RUN_DIR/rows.jsonl and RUN_DIR/meta.json, prints markdown

"added" = this row minus the `direct` row of the same scenario and concurrency.
For `direct` the CPU and RSS columns are the mock upstream's (marked "mock").
"""
import json
import os
import sys

TITLES = {
    "chat": "Non-streaming chat completion (`POST /v1/chat/completions`)",
    "stream": "Streaming chat completion (`\"stream\": true`, 20 chunks + `[DONE]`)",
}
TARGET_ORDER = ["direct", "gateway", "gateway-auth", "gateway-cache", "gateway-log", "nginx-proxy"]

# (name, threshold text, row selector, value fn, ok fn)
# later targets are marked as such in the table


def fmt(v, nd=2, suffix=""):
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return f"{v:.{nd}f}{suffix}"
    return f"{v}{suffix}"


def load(run_dir):
    rows = []
    with open(os.path.join(run_dir, "rows.jsonl")) as f:
        rows = [json.loads(line) for line in f if line.strip()]
    meta = {}
    mp = os.path.join(run_dir, "meta.json")
    if os.path.exists(mp):
        with open(mp) as f:
            meta = json.load(f)
    return rows, meta


def order_key(targets):
    def key(t):
        return (TARGET_ORDER.index(t) if t in TARGET_ORDER else len(TARGET_ORDER) + targets.index(t))
    return key


def main():
    run_dir = sys.argv[1]
    rows, meta = load(run_dir)
    out = []
    p = out.append

    targets = []
    for r in rows:
        if r["target"] not in targets:
            targets.append(r["target"])
    targets.sort(key=order_key(list(targets)))
    scenarios = []
    for r in rows:
        if r["kind"] in ("wrk", "sse") and r["scenario"] not in scenarios:
            scenarios.append(r["scenario"])

    measured = [r for r in rows if r["kind"] in ("wrk", "sse") and "skipped" not in r]
    skipped = [r for r in rows if "skipped" in r]
    base = {(r["scenario"], r["conc"]): r for r in measured if r["target"] == "direct"}
    get = {(r["target"], r["scenario"], r["conc"]): r for r in measured}

    def added(r, key):
        b = base.get((r["scenario"], r["conc"]))
        if b is None or b.get(key) is None or r.get(key) is None or r["target"] == "direct":
            return None
        return r[key] - b[key]

    # running peak RSS per target, in measuring order
    peak = {}
    for r in measured:
        if r.get("peak_rss_mib") is not None:
            peak[r["target"]] = max(peak.get(r["target"], 0.0), r["peak_rss_mib"])

    p(f"# ai-gateway overhead benchmark, {meta.get('date', '?')}")
    p("")
    if meta:
        p(f"- Command: `{meta.get('command', '?')}`")
        p(f"- Machine: {meta.get('nproc', '?')} CPUs, {meta.get('cpu_model', '?')}, "
          f"{meta.get('mem', '?')}, kernel {meta.get('kernel', '?')}; load average at start "
          f"{meta.get('loadavg_start', '?')}, at end {meta.get('loadavg_end', '?')}")
        p(f"- Gateway: {meta.get('gateway_version', '?')}, git {meta.get('git', '?')}; "
          f"binary `{meta.get('gateway_bin', '?')}`")
        p(f"- Placement: target (gateway / nginx) on CPU {meta.get('gw_cpu')}; mock upstream "
          f"(`ai-gateway mock-server`), load generator and probes on CPU {meta.get('load_cpu')}; "
          f"all at nice {meta.get('nice', 0)}")
        p(f"- Load: {meta.get('wrk_version', 'wrk')}, 1 thread, closed loop, keep-alive, "
          f"{meta.get('duration')} s per step after {meta.get('warmup')} s warm-up at c=16; streams: "
          f"bench/lib/sse_probe.py (Python asyncio, keep-alive); gateway log level "
          f"`{meta.get('log_level')}`")
        if meta.get("nginx"):
            p(f"- nginx-proxy: {meta['nginx']} as a plain reverse proxy (`proxy_pass`, keepalive "
              f"upstream, `proxy_buffering off`), 1 worker")
        p("")

    def cpu_cell(r, key, nd):
        v = fmt(r.get(key), nd)
        return f"{v} (mock)" if r["target"] == "direct" and r.get(key) is not None else v

    gw_cpu, load_cpu = meta.get("gw_cpu", 0), meta.get("load_cpu", 1)
    for sc in scenarios:
        rs = [r for r in measured if r["scenario"] == sc]
        if not rs:
            continue
        rs.sort(key=lambda r: (r["conc"], order_key(targets)(r["target"])))
        kind = rs[0]["kind"]
        p(f"## {TITLES.get(sc, sc)}")
        p("")
        if kind == "wrk":
            p(f"| target | conc | req/s | p50 ms | p99 ms | added p50 ms | added p99 ms | CPU-s / 1k req "
              f"| req / CPU-s | target CPU % | CPU{gw_cpu} busy % | CPU{load_cpu} busy % | peak RSS MiB | errors |")
            p("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
            for r in rs:
                p(f"| {r['target']} | {r['conc']} | {r['rps']:.0f} | {fmt(r['p50_ms'], 3)} | {fmt(r['p99_ms'], 3)} "
                  f"| {fmt(added(r, 'p50_ms'), 3)} | {fmt(added(r, 'p99_ms'), 3)} | {cpu_cell(r, 'cpu_s_per_1k', 3)} "
                  f"| {cpu_cell(r, 'req_per_cpu_s', 0)} | {cpu_cell(r, 'target_cpu_pct', 0)} | {fmt(r.get('gw_core_busy_pct'), 0)} "
                  f"| {fmt(r.get('load_core_busy_pct'), 0)} | {cpu_cell(r, 'peak_rss_mib', 1)} | {r['errors']} |")
        else:
            p(f"| target | conc | streams/s | TTFB p50 ms | TTFB p99 ms | total p50 ms | total p99 ms "
              f"| added TTFB p50 ms | added TTFB p99 ms | added total p50 ms | CPU-s / 1k streams "
              f"| streams / CPU-s | target CPU % | CPU{gw_cpu} busy % | CPU{load_cpu} busy % | peak RSS MiB | events / stream "
              f"| no terminator | errors |")
            p("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
            for r in rs:
                p(f"| {r['target']} | {r['conc']} | {r['rps']:.0f} | {fmt(r['ttfb_p50_ms'], 3)} "
                  f"| {fmt(r['ttfb_p99_ms'], 3)} | {fmt(r['p50_ms'], 3)} | {fmt(r['p99_ms'], 3)} "
                  f"| {fmt(added(r, 'ttfb_p50_ms'), 3)} | {fmt(added(r, 'ttfb_p99_ms'), 3)} "
                  f"| {fmt(added(r, 'p50_ms'), 3)} | {cpu_cell(r, 'cpu_s_per_1k', 3)} "
                  f"| {cpu_cell(r, 'req_per_cpu_s', 0)} | {cpu_cell(r, 'target_cpu_pct', 0)} | {fmt(r.get('gw_core_busy_pct'), 0)} "
                  f"| {fmt(r.get('load_core_busy_pct'), 0)} | {cpu_cell(r, 'peak_rss_mib', 1)} "
                  f"| {fmt(r.get('events_per_response'), 1)} | {r.get('no_terminator', 0)} | {r['errors']} |")
            for r in rs:
                if r.get("first_error"):
                    p(f"\n{r['target']} c={r['conc']} first stream error: `{r['first_error'][:300]}`")
        p("")

    # gateway vs nginx, per scenario and concurrency
    ratios = []
    for sc in scenarios:
        for (t, s, c), r in sorted(get.items(), key=lambda kv: kv[0][2]):
            if t == "gateway" and s == sc:
                n = get.get(("nginx-proxy", s, c))
                if n and r.get("req_per_cpu_s") and n.get("req_per_cpu_s"):
                    ratios.append((s, c, r["req_per_cpu_s"], n["req_per_cpu_s"]))
    if ratios:
        p("## Gateway CPU efficiency versus nginx `proxy_pass` (requests per CPU-second of each)")
        p("")
        p("| scenario | conc | gateway req / CPU-s | nginx req / CPU-s | gateway / nginx |")
        p("|---|---:|---:|---:|---:|")
        for s, c, g, n in ratios:
            p(f"| {s} | {c} | {g:.0f} | {n:.0f} | {g / n:.2f}x |")
        p("")

    st = next((r for r in rows if r["scenario"] == "startup"), None)
    idle = {r["target"]: r for r in rows if r["scenario"] == "idle"}
    p("## Gateway process")
    p("")
    p("| figure | value |")
    p("|---|---:|")
    if st:
        p(f"| startup to ready (spawn -> first 200 from `GET /health`), median of {st['runs']} "
          f"| {fmt(st['ready_ms_median'])} ms (min {fmt(st['ready_ms_min'])}, max {fmt(st['ready_ms_max'])}) |")
        p(f"| RSS right at ready, median | {fmt(st['rss_ready_mib_median'], 1)} MiB |")
        if st.get("rss_settled_mib") is not None:
            p(f"| RSS after {st['settle_s']:g} s idle | {fmt(st['rss_settled_mib'], 1)} MiB |")
        if st.get("errors"):
            p(f"| startup errors | {'; '.join(st['errors'])} |")
    if "gateway" in idle:
        p(f"| RSS of the measured instance before any request | {fmt(idle['gateway']['rss_mib'], 1)} MiB |")
    if "gateway" in peak:
        p(f"| peak RSS under load (all scenarios) | {fmt(peak['gateway'], 1)} MiB |")
    for t in targets:
        if t != "gateway" and t in idle:
            p(f"| {t}: idle RSS / peak RSS | {fmt(idle[t]['rss_mib'], 1)} / {fmt(peak.get(t), 1)} MiB |")
    p("")

    # targets of the performance issue
    def g(s, c, k):
        r = get.get(("gateway", s, c))
        return None if r is None else r.get(k)

    def add(s, c, k):
        r = get.get(("gateway", s, c))
        return None if r is None else added(r, k)

    n64 = get.get(("nginx-proxy", "chat", 64))
    ratio64 = (g("chat", 64, "req_per_cpu_s") / n64["req_per_cpu_s"]
               if n64 and n64.get("req_per_cpu_s") and g("chat", 64, "req_per_cpu_s") else None)
    idle_rss = st["rss_ready_mib_median"] if st else (idle.get("gateway") or {}).get("rss_mib")
    checks = [
        ("added p50, non-streaming, c=1", "< 0.2 ms", add("chat", 1, "p50_ms"), lambda v: v < 0.2, " ms", 3),
        ("idle RSS (at ready)", "< 30 MB", idle_rss, lambda v: v * 1.048576 < 30, " MiB", 1),
        ("startup to ready (median)", "< 100 ms", st and st["ready_ms_median"], lambda v: v < 100, " ms", 1),
        ("later: req / CPU-s at c=64 vs nginx proxy_pass", ">= 0.7x", ratio64, lambda v: v >= 0.7, "x", 2),
        ("later: added p99, non-streaming, c=64", "<= 1 ms", add("chat", 64, "p99_ms"), lambda v: v <= 1.0, " ms", 3),
        ("later: added TTFB p50, streaming, c=16", "<= 0.5 ms", add("stream", 16, "ttfb_p50_ms"), lambda v: v <= 0.5, " ms", 3),
        ("later: idle RSS (at ready)", "<= 20 MiB", idle_rss, lambda v: v <= 20, " MiB", 1),
    ]
    p("## Against the targets")
    p("")
    p("| figure | target | measured | |")
    p("|---|---|---:|---|")
    for name, thr, v, ok, unit, nd in checks:
        verdict = "n/a" if v is None else ("met" if ok(v) else "**not met**")
        p(f"| {name} | {thr} | {fmt(float(v) if v is not None else None, nd, unit)} | {verdict} |")
    p("")

    if skipped:
        p("## Skipped")
        p("")
        for r in skipped:
            p(f"- {r['target']} / {r['scenario']}" + (f" c={r['conc']}" if "conc" in r else "")
              + f": {r['skipped'][:300]}")
        p("")
    # Other processes on the target's core: its busy share minus the target's own CPU share
    # (for `direct` nothing of ours runs there, so all of it is foreign).
    foreign = []
    for r in measured:
        b = r.get("gw_core_busy_pct")
        if b is None:
            continue
        own = 0.0 if r["target"] == "direct" else (r.get("target_cpu_pct") or 0.0)
        foreign.append(b - own)
    notes = list(meta.get("notes") or [])
    if foreign:
        worst = max(foreign)
        shared = sum(1 for f in foreign if f > 10)
        if shared:
            notes.append(f"CPU{gw_cpu} (the target's core) also ran other processes in {shared} of "
                         f"{len(foreign)} steps (up to {worst:.0f} % of the core): the machine was shared "
                         f"while measuring. At nice {meta.get('nice', 0)} they mostly fill the target's idle "
                         f"time, but they still delay wake-ups: p99 and throughput are pessimistic; CPU-s "
                         f"per request and p50 hold up best. Re-run on a quiet machine for the tail.")
    if notes:
        p("## Notes")
        p("")
        for n in notes:
            p(f"- {n}")
        p("")
    print("\n".join(out))


if __name__ == "__main__":
    main()
