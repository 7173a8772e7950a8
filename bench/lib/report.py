#!/usr/bin/env python3
"""Markdown report from one bench run.

  report.py RUN_DIR          reads RUN_DIR/rows.jsonl and RUN_DIR/meta.json, prints markdown

"added" = this row minus the `direct` row of the same scenario and concurrency (for the
translated scenarios `stream-via-anthropic`, `stream-gemini`, `stream-bedrock`: direct's `stream`,
the same OpenAI stream straight from the mock; for `chat-gemini`, `chat-bedrock`: direct's `chat`).
For `direct` the CPU and RSS columns are the mock upstream's (marked "mock").
"""
import json
import statistics
import os
import sys

TITLES = {
    "chat": "Non-streaming chat completion (`POST /v1/chat/completions`), every target",
    "stream": "Streaming chat completion, pass-through (`\"stream\": true`, OpenAI provider: 20 chunks + `[DONE]`)",
    "stream-via-anthropic": "Streaming chat completion from the `anthropic` provider (Anthropic events -> OpenAI chunks)",
    "messages-stream": "Anthropic client, `POST /v1/messages` streaming, OpenAI provider (OpenAI chunks -> Anthropic events)",
    "embeddings": "Embeddings (`POST /v1/embeddings`)",
    "chat-gemini": "Non-streaming chat completion from the `gemini` provider (OpenAI -> Gemini -> OpenAI)",
    "chat-bedrock": "Non-streaming chat completion from the `bedrock` provider (OpenAI -> Converse -> OpenAI, SigV4-signed)",
    "stream-gemini": "Streaming chat completion from the `gemini` provider (Gemini SSE events -> OpenAI chunks)",
    "stream-bedrock": "Streaming chat completion from the `bedrock` provider (AWS event-stream frames -> OpenAI chunks)",
}
TARGET_ORDER = ["direct", "gateway", "nginx-proxy", "gateway-full", "gateway-route-least-busy",
                "gateway-route-latency", "gateway-auth", "gateway-auth-shared", "mock-on-gw-cpu", "gateway-cache",
                "gateway-cache-l2", "gateway-cache-100k", "gateway-log"]
# Scenario whose `direct` rows are another scenario's baseline.
BASELINE = {"stream-via-anthropic": "stream", "stream-gemini": "stream", "stream-bedrock": "stream",
            "chat-gemini": "chat", "chat-bedrock": "chat"}


def fmt(v, nd=2, suffix=""):
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return f"{v:.{nd}f}{suffix}"
    return f"{v}{suffix}"


def ratio(a, b):
    return a / b if a is not None and b else None


def load(run_dir):
    with open(os.path.join(run_dir, "rows.jsonl")) as f:
        rows = [json.loads(line) for line in f if line.strip()]
    meta = {}
    mp = os.path.join(run_dir, "meta.json")
    if os.path.exists(mp):
        with open(mp) as f:
            meta = json.load(f)
    return rows, meta


def median_rounds(measured):
    """One row per (target, scenario, conc): with REPEAT > 1 each number is the median over the
    rounds (each field on its own; peak RSS the highest), in the order rows first appeared."""
    groups = {}
    for r in measured:
        groups.setdefault((r["target"], r["scenario"], r["conc"]), []).append(r)
    out = []
    for rs in groups.values():
        if len(rs) == 1:
            out.append(rs[0])
            continue
        merged = dict(rs[0])
        for k in merged:
            vals = [r.get(k) for r in rs]
            if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in vals):
                merged[k] = max(vals) if k.startswith("peak") else statistics.median(vals)
        merged["rounds"] = len(rs)
        out.append(merged)
    return out


def per_round(raw, target, scenario, conc):
    """target's req / CPU-s over nginx-proxy's, round by round (the i-th row of each)."""
    def series(t):
        return [r.get("req_per_cpu_s") for r in raw
                if r["target"] == t and r["scenario"] == scenario and r["conc"] == conc]
    pairs = zip(series(target), series("nginx-proxy"))
    return [g / n for g, n in pairs if g and n]


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

    raw = [r for r in rows if r["kind"] in ("wrk", "sse") and "skipped" not in r]
    measured = median_rounds(raw)
    skipped = [r for r in rows if "skipped" in r]
    base = {(r["scenario"], r["conc"]): r for r in measured if r["target"] == "direct"}
    get = {(r["target"], r["scenario"], r["conc"]): r for r in measured}

    def row(t, s, c):
        return get.get((t, s, c))

    def val(t, s, c, k):
        r = row(t, s, c)
        return None if r is None else r.get(k)

    def added(r, key):
        if r is None or r["target"] == "direct":
            return None
        b = base.get((BASELINE.get(r["scenario"], r["scenario"]), r["conc"]))
        if b is None or b.get(key) is None or r.get(key) is None:
            return None
        return r[key] - b[key]

    def cpu_ms(r):
        return None if r is None or r.get("cpu_s_per_1k") is None else r["cpu_s_per_1k"]

    # running peak RSS per target, in measuring order
    peak = {}
    for r in measured:
        if r.get("peak_rss_mib") is not None:
            peak[r["target"]] = max(peak.get(r["target"], 0.0), r["peak_rss_mib"])

    p(f"# ai-gateway overhead benchmark, {meta.get('date', '?')}")
    p("")
    if meta:
        p(f"- Command: `{meta.get('command', '?')}` ({meta.get('wall_s', '?')} s)")
        p(f"- Machine: {meta.get('nproc', '?')} CPUs, {meta.get('cpu_model', '?')}, "
          f"{meta.get('mem', '?')}, kernel {meta.get('kernel', '?')}; load average at start "
          f"{meta.get('loadavg_start', '?')}, at end {meta.get('loadavg_end', '?')}")
        p(f"- Gateway: {meta.get('gateway_version', '?')}, git {meta.get('git', '?')}; "
          f"binary `{meta.get('gateway_bin', '?')}`")
        p(f"- Placement: target (gateway / nginx) on CPU {meta.get('gw_cpu')}; mock upstream "
          f"(`ai-gateway mock-server`), Redis, load generator and probes on CPU {meta.get('load_cpu')}; "
          f"all at nice {meta.get('nice', 0)}")
        p(f"- Load: {meta.get('wrk_version', 'wrk')}, 1 thread, closed loop, keep-alive, "
          f"{meta.get('duration')} s per step after {meta.get('warmup')} s warm-up at c=16; streams: "
          f"bench/lib/sse_probe.py (Python asyncio, keep-alive); gateway log level "
          f"`{meta.get('log_level')}`")
        if meta.get("repeat", 1) > 1:
            p(f"- Rounds: {meta['repeat']} (`REPEAT`), the targets interleaved round by round; each "
              f"load figure below is the median over the rounds (peak RSS: the highest); idle RSS, "
              f"slow streams, Redis calls and the cache fill are from one round")
        if meta.get("nginx"):
            p(f"- nginx-proxy: {meta['nginx']} as a plain reverse proxy (`proxy_pass`, keepalive "
              f"upstream, `proxy_buffering off`), 1 worker")
        if meta.get("redis"):
            p(f"- Redis: {meta['redis']}, started by the run on a free port, no persistence")
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
            p(f"| target | conc | req/s | p50 ms | p99 ms | added p50 ms | added p99 ms | CPU-ms / req "
              f"| req / CPU-s | target CPU % | CPU{gw_cpu} busy % | CPU{load_cpu} busy % | peak RSS MiB | errors |")
            p("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
            for r in rs:
                p(f"| {r['target']} | {r['conc']} | {r['rps']:.0f} | {fmt(r['p50_ms'], 3)} | {fmt(r['p99_ms'], 3)} "
                  f"| {fmt(added(r, 'p50_ms'), 3)} | {fmt(added(r, 'p99_ms'), 3)} | {cpu_cell(r, 'cpu_s_per_1k', 3)} "
                  f"| {cpu_cell(r, 'req_per_cpu_s', 0)} | {cpu_cell(r, 'target_cpu_pct', 0)} | {fmt(r.get('gw_core_busy_pct'), 0)} "
                  f"| {fmt(r.get('load_core_busy_pct'), 0)} | {cpu_cell(r, 'peak_rss_mib', 1)} | {r['errors']} |")
        else:
            p(f"| target | conc | streams/s | TTFB p50 ms | TTFB p99 ms | total p50 ms | total p99 ms "
              f"| added TTFB p50 ms | added TTFB p99 ms | added total p50 ms | CPU-ms / stream "
              f"| streams / CPU-s | target CPU % | CPU{gw_cpu} busy % | CPU{load_cpu} busy % | peak RSS MiB "
              f"| events / stream | text events | no terminator | errors |")
            p("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
            for r in rs:
                p(f"| {r['target']} | {r['conc']} | {r['rps']:.0f} | {fmt(r['ttfb_p50_ms'], 3)} "
                  f"| {fmt(r['ttfb_p99_ms'], 3)} | {fmt(r['p50_ms'], 3)} | {fmt(r['p99_ms'], 3)} "
                  f"| {fmt(added(r, 'ttfb_p50_ms'), 3)} | {fmt(added(r, 'ttfb_p99_ms'), 3)} "
                  f"| {fmt(added(r, 'p50_ms'), 3)} | {cpu_cell(r, 'cpu_s_per_1k', 3)} "
                  f"| {cpu_cell(r, 'req_per_cpu_s', 0)} | {cpu_cell(r, 'target_cpu_pct', 0)} | {fmt(r.get('gw_core_busy_pct'), 0)} "
                  f"| {fmt(r.get('load_core_busy_pct'), 0)} | {cpu_cell(r, 'peak_rss_mib', 1)} "
                  f"| {fmt(r.get('events_per_response'), 1)} | {fmt(r.get('content_events'))} "
                  f"| {r.get('no_terminator', 0)} | {r['errors']} |")
            for r in rs:
                if r.get("first_error"):
                    p(f"\n{r['target']} c={r['conc']} first stream error: `{r['first_error'][:300]}`")
        p("")

    # ---- translated vs pass-through streams (gateway CPU per stream)
    xl = []
    for c in sorted({r["conc"] for r in measured if r["target"] == "gateway" and r["kind"] == "sse"}):
        a = row("gateway", "stream", c)
        for sc, label in (("stream", "(a) OpenAI client -> OpenAI provider (pass-through)"),
                          ("stream-via-anthropic", "(b) OpenAI client -> `anthropic` provider (Anthropic -> OpenAI)"),
                          ("messages-stream", "(c) Anthropic client `/v1/messages` -> OpenAI provider (OpenAI -> Anthropic)"),
                          ("stream-gemini", "(d) OpenAI client -> `gemini` provider (Gemini -> OpenAI)"),
                          ("stream-bedrock", "(e) OpenAI client -> `bedrock` provider (event stream -> OpenAI)")):
            r = row("gateway", sc, c)
            if r is not None:
                xl.append((c, sc, label, r, ratio(cpu_ms(r), cpu_ms(a))))
    if xl:
        p("## Translated against pass-through streams (gateway CPU per stream)")
        p("")
        p("Same prompt (18 words: 18 text chunks) in all; the gateway's own CPU-ms per stream, "
          "from /proc. The upstream (mock) speaks OpenAI in (a) and (c) (21 events: role, 18 text, "
          "finish, `[DONE]`), Anthropic in (b) (23 events: message_start, content_block_start, 18 "
          "deltas, content_block_stop, message_delta, message_stop), Gemini in (d) (18 SSE events, "
          "one `GenerateContentResponse` per word with its usage so far) and Bedrock ConverseStream "
          "in (e) (22 binary frames: messageStart, 18 contentBlockDelta, contentBlockStop, "
          "messageStop, metadata).")
        p("")
        p("| conc | stream | events out / stream | text events | streams/s | TTFB p50 ms | added TTFB p50 ms "
          "| gateway CPU-ms / stream | vs (a) |")
        p("|---:|---|---:|---:|---:|---:|---:|---:|---:|")
        for c, sc, label, r, rt in xl:
            p(f"| {c} | {label} | {fmt(r.get('events_per_response'), 0)} | {fmt(r.get('content_events'))} "
              f"| {r['rps']:.0f} | {fmt(r['ttfb_p50_ms'], 3)} | {fmt(added(r, 'ttfb_p50_ms'), 3)} "
              f"| {fmt(cpu_ms(r), 3)} | {fmt(rt, 2, 'x')} |")
        p("")

    # ---- translated vs pass-through, non-streaming (gateway CPU per request)
    xc = []
    for c in sorted({r["conc"] for r in measured if r["target"] == "gateway" and r["scenario"] in ("chat-gemini", "chat-bedrock")}):
        a = row("gateway", "chat", c)
        for sc, label in (("chat", "OpenAI provider (pass-through)"),
                          ("chat-gemini", "`gemini` provider (OpenAI -> Gemini -> OpenAI)"),
                          ("chat-bedrock", "`bedrock` provider (OpenAI -> Converse -> OpenAI, signed)")):
            r = row("gateway", sc, c)
            if r is not None:
                xc.append((c, label, r, ratio(cpu_ms(r), cpu_ms(a))))
    if xc:
        p("## Translated against pass-through, non-streaming (gateway CPU per request)")
        p("")
        p("The same OpenAI request (the `chat` prompt) for a model served by each provider, all at the "
          "mock: the request translated to Gemini's `generateContent` or Bedrock's `Converse` (and "
          "SigV4-signed), the answer translated back to a `chat.completion`.")
        p("")
        p("| conc | provider | req/s | p50 ms | added p50 ms | gateway CPU-ms / req | req / CPU-s | vs pass-through |")
        p("|---:|---|---:|---:|---:|---:|---:|---:|")
        for c, label, r, rt in xc:
            p(f"| {c} | {label} | {r['rps']:.0f} | {fmt(r['p50_ms'], 3)} | {fmt(added(r, 'p50_ms'), 3)} "
              f"| {fmt(cpu_ms(r), 3)} | {fmt(r.get('req_per_cpu_s'), 0)} | {fmt(rt, 2, 'x')} |")
        p("")

    # ---- routing / full configuration
    rt_targets = ["gateway", "gateway-route-least-busy", "gateway-route-latency", "gateway-full", "nginx-proxy"]
    rt_concs = sorted({r["conc"] for r in measured if r["target"] in rt_targets[1:4] and r["scenario"] == "chat"})
    if rt_concs:
        p("## Routing: one deployment against three (non-streaming)")
        p("")
        p("`gateway`: model with one deployment. `gateway-route-*`: the model over three `openai` "
          "providers, all pointing at the same mock. `gateway-full`: three deployments (least-busy) "
          "+ a key with rpm/tpm limits (local) + metrics (always on).")
        p("")
        p("| target | conc | req/s | p50 ms | p99 ms | CPU-ms / req | req / CPU-s | vs gateway (1 deployment) | vs nginx |")
        p("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        for c in rt_concs:
            g1 = val("gateway", "chat", c, "req_per_cpu_s")
            ng = val("nginx-proxy", "chat", c, "req_per_cpu_s")
            for t in rt_targets:
                r = row(t, "chat", c)
                if r is None:
                    continue
                p(f"| {t} | {c} | {r['rps']:.0f} | {fmt(r['p50_ms'], 3)} | {fmt(r['p99_ms'], 3)} | {fmt(cpu_ms(r), 3)} "
                  f"| {fmt(r.get('req_per_cpu_s'), 0)} | {fmt(ratio(r.get('req_per_cpu_s'), g1), 2, 'x')} "
                  f"| {fmt(ratio(r.get('req_per_cpu_s'), ng), 2, 'x')} |")
        p("")

    # ---- auth + limits
    au_targets = ["gateway", "gateway-auth", "gateway-auth-shared"]
    au_concs = sorted({r["conc"] for r in measured if r["target"] in au_targets[1:] and r["scenario"] == "chat"})
    calls = next((r for r in rows if r["target"] == "gateway-auth-shared" and r["scenario"] == "redis-calls"), None)
    if au_concs:
        p("## Auth + rate limits (non-streaming)")
        p("")
        p("A static key with rpm 1e9 / tpm 1e12 (nothing is refused): checked, counted, spend recorded on "
          "every request. `gateway-auth`: limits in process. `gateway-auth-shared`: `rate_limits.shared: "
          "true` with `state.redis_url` (Redis on the load core; its CPU is in the last column).")
        p("")
        p("| target | conc | req/s | p50 ms | p99 ms | added p50 ms | added p99 ms | CPU-ms / req | req / CPU-s "
          "| vs no auth | Redis CPU-ms / req |")
        p("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for c in au_concs:
            g0 = val("gateway", "chat", c, "req_per_cpu_s")
            for t in au_targets:
                r = row(t, "chat", c)
                if r is None:
                    continue
                p(f"| {t} | {c} | {r['rps']:.0f} | {fmt(r['p50_ms'], 3)} | {fmt(r['p99_ms'], 3)} "
                  f"| {fmt(added(r, 'p50_ms'), 3)} | {fmt(added(r, 'p99_ms'), 3)} | {fmt(cpu_ms(r), 3)} "
                  f"| {fmt(r.get('req_per_cpu_s'), 0)} | {fmt(ratio(r.get('req_per_cpu_s'), g0), 2, 'x')} "
                  f"| {fmt(r.get('aux_cpu_ms_per_req'), 3)} |")
        p("")
    if calls:
        pr = calls["per_request"]
        p(f"Redis commands per request, shared limits (`redis-cli info commandstats` around {calls['n']} "
          f"sequential requests, statuses {calls['status']}); commands a Lua script runs are counted too:")
        p("")
        p("| command | per request |")
        p("|---|---:|")
        for k, v in pr.items():
            p(f"| {k} | {v:g} |")
        p("")
        ev = pr.get("evalsha", 0) + pr.get("eval", 0)
        pipe = pr.get("hincrbyfloat", 0)
        p(f"Per request: {ev:g} script call(s) (EVALSHA/EVAL) and {pipe:g} spend write(s) "
          f"(HINCRBYFLOAT + HINCRBY x3 + EXPIRE). In this build they take 2 round trips: the limit "
          f"check (`gcra.lua`: TIME, GET and SET per bucket, inside Redis) on the request path; then, "
          f"after the answer and off the request path, one pipeline with the token correction "
          f"(`adjust.lua`: TIME, GET, SET or DEL) and the spend record (commandstats cannot see "
          f"pipelining; `accounting.rs` builds it). One script call for the check itself: "
          f"{'yes' if ev >= 1 else 'no'}.")
        p("")

    # ---- cache
    ca_concs = sorted({r["conc"] for r in measured if r["target"] in ("gateway-cache", "gateway-cache-l2") and r["scenario"] == "chat"})
    if ca_concs:
        p("## Cache hits (non-streaming) against the upstream served directly")
        p("")
        p("`gateway-cache`: `cache.enabled`, the same request repeated: L1 hits. `gateway-cache-l2`: Redis "
          "as L2 and `l1_max_bytes: 1` (L1 keeps nothing: every entry outweighs it and is dropped at "
          "moka's next maintenance); distinct requests (same shape as `chat`, one word is an index) "
          "are stored first, then cycled over, so a request returns only long after L1 dropped it: "
          "L1 miss, L2 hit (GET + decompress, and the copy into L1). `answered by` = the gateway's "
          "`ai_gateway_cache_requests_total` counters over the step. `mock-on-gw-cpu`: a second mock "
          "pinned to the gateway's core (the fair upstream baseline: `direct` shares wrk's core and never "
          "pays a cross-core wake-up, which the gateway does on every request).")
        p("")
        p("| target | conc | req/s | p50 ms | p99 ms | added p50 ms | added p99 ms | vs direct req/s "
          "| vs mock-on-gw-cpu req/s | gateway CPU-ms / req | Redis CPU-ms / req | answered by |")
        p("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
        for c in ca_concs:
            d = row("direct", "chat", c)
            m = row("mock-on-gw-cpu", "chat", c)
            for t in ("direct", "mock-on-gw-cpu", "gateway", "gateway-cache", "gateway-cache-l2"):
                r = row(t, "chat", c)
                if r is None:
                    continue
                by = ""
                cc = r.get("cache") or {}
                n = r["requests"] or 1
                if cc.get("l1_hit") or cc.get("l2_hit"):
                    by = f"L1 hit {100 * cc.get('l1_hit', 0) / n:.1f} %, L2 hit {100 * cc.get('l2_hit', 0) / n:.1f} %"
                elif t == "direct":
                    by = "the mock (on the load core)"
                elif t == "mock-on-gw-cpu":
                    by = "the mock (on the gateway's core)"
                elif t == "gateway":
                    by = "upstream (cache off)"
                p(f"| {t} | {c} | {r['rps']:.0f} | {fmt(r['p50_ms'], 3)} | {fmt(r['p99_ms'], 3)} "
                  f"| {fmt(added(r, 'p50_ms'), 3)} | {fmt(added(r, 'p99_ms'), 3)} "
                  f"| {fmt(ratio(r['rps'], d and d['rps']), 2, 'x') if t != 'direct' else ''} "
                  f"| {fmt(ratio(r['rps'], m and m['rps']), 2, 'x') if t not in ('direct', 'mock-on-gw-cpu') else ''} "
                  f"| {cpu_cell(r, 'cpu_s_per_1k', 3)} | {fmt(r.get('aux_cpu_ms_per_req'), 3) if 'aux_cpu_ms_per_req' in r else ''} | {by} |")
        p("")
        l2calls = next((r for r in rows if r["target"] == "gateway-cache-l2" and r["scenario"] == "redis-calls"), None)
        if l2calls:
            p(f"Redis commands per L2 hit ({l2calls['n']} distinct stored requests, answered by "
              f"{l2calls.get('cache_layers')}): " + ", ".join(f"{k} {v:g}" for k, v in l2calls["per_request"].items()) + ".")
            p("")
    fills = [r for r in rows if r["scenario"] == "cache-fill" and r["target"] == "gateway-cache-100k"]
    for f in fills:
        p(f"## Memory with {f['n']} cached answers")
        p("")
        if f.get("skipped"):
            p(f"skipped: {f['skipped']}")
            p("")
            continue
        per = (f["rss_settled_mib"] - f["rss_before_mib"]) * 1024 / f["n"]
        p(f"{f['n']} distinct chat requests (same shape as `chat`) through the gateway with the cache on "
          f"(`l1_max_entries` 2x that, `l1_max_bytes` 256 MiB), wrk c={f['conc']} ({f['fill_s']} s, "
          f"{f.get('errors')} errors); then {f['sample']} random ones re-sent: {f['sample_hits']} were hits "
          f"({f.get('sample_layers')}), i.e. ~{f['held_est']} answers held.")
        p("")
        p("| RSS before | RSS right after the fill | after 1 s idle | peak during the fill | per cached answer |")
        p("|---:|---:|---:|---:|---:|")
        p(f"| {f['rss_before_mib']} MiB | {f['rss_after_fill_mib']} MiB | {f['rss_settled_mib']} MiB "
          f"| {f['peak_rss_mib']} MiB | {per:.2f} KiB |")
        p("")

    slows = [r for r in rows if r["kind"] == "slow-streams"]
    if slows:
        p("## Slow streams held open at once")
        p("")
        p("Streaming chat requests opened over a few seconds and held until their `[DONE]` (a word every "
          "`SLOW_LATENCY`, 21 events each), one connection each (`lib/slow_streams.py`, asyncio). "
          "`gateway-slow-streams`: through the gateway to a `mock-server --latency` upstream (one upstream "
          "connection per stream too); `gateway-slow-streams-h2c`: the same upstream over HTTP/2 without TLS "
          "(`http2: true`: the streams share a few upstream connections); "
          "`gateway-slow-streams-local`: the gateway's own `mock` provider with "
          "`latency` (client connections only). The gateway's RSS sampled every 0.1 s.")
        p("")
        p("| target | streams | open at once | completed | errors | RSS before MiB | peak RSS MiB | per stream KiB | TTFB p50 / p99 ms | gateway CPU s | note |")
        p("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
        for r in slows:
            per = (r["peak_rss_mib"] - r["rss_before_mib"]) * 1024 / max(1, r["max_open"])
            p(f"| {r['target']} | {r['n']} | {r['max_open']} | {r['completed']} | {r['errors']} "
              f"| {r['rss_before_mib']} | {r['peak_rss_mib']} | {per:.1f} "
              f"| {fmt(r.get('ttfb_p50_ms'), 0)} / {fmt(r.get('ttfb_p99_ms'), 0)} | {r['cpu_s']} "
              f"| {(r.get('note') or '') + (' last error: ' + str(r['last_error'])[:80] if r.get('last_error') else '')} |")
        p("")

    # ---- gateway vs nginx, per scenario and concurrency
    ratios = []
    for t in ("gateway", "gateway-full"):
        for sc in scenarios:
            for (tt, s, c), r in sorted(get.items(), key=lambda kv: kv[0][2]):
                if tt == t and s == sc:
                    n = get.get(("nginx-proxy", s, c))
                    if n and r.get("req_per_cpu_s") and n.get("req_per_cpu_s"):
                        ratios.append((t, s, c, r["req_per_cpu_s"], n["req_per_cpu_s"]))
    if ratios:
        p("## Gateway CPU efficiency versus nginx `proxy_pass` (requests per CPU-second of each)")
        p("")
        rounds = meta.get("repeat", 1) > 1
        p("| target | scenario | conc | gateway req / CPU-s | nginx req / CPU-s | gateway / nginx |"
          + (" each round (gateway / nginx of the same round) | median of the rounds |" if rounds else ""))
        p("|---|---|---:|---:|---:|---:|" + ("---|---:|" if rounds else ""))
        for t, s, c, g, n in ratios:
            extra = ""
            if rounds:
                each = per_round(raw, t, s, c)
                extra = (f" {' '.join(f'{x:.2f}' for x in each)} | "
                         f"{statistics.median(each):.2f}x |" if each else " | |")
            p(f"| {t} | {s} | {c} | {g:.0f} | {n:.0f} | {g / n:.2f}x |{extra}")
        if rounds:
            p("")
            p("With rounds, \"gateway / nginx\" is the ratio of the two medians; the last columns pair "
              "each round's gateway with the nginx of the same round, which shared the machine's state.")
        p("")

    starts = [r for r in rows if r["kind"] == "startup"]
    idle = {r["target"]: r for r in rows if r["scenario"] == "idle"}
    st = next((r for r in starts if r["scenario"] == "startup"), None)
    stm = next((r for r in starts if r["scenario"] != "startup"), None)
    p("## Gateway process")
    p("")
    p("| figure | value |")
    p("|---|---:|")
    for s in starts:
        what = "bench configuration (4 models)" if s["scenario"] == "startup" else f"{s.get('models')} models, 2 deployments each"
        p(f"| startup to ready (spawn -> first 200 from `GET /health`), {what}, median of {s['runs']} "
          f"| {fmt(s['ready_ms_median'])} ms (min {fmt(s['ready_ms_min'])}, max {fmt(s['ready_ms_max'])}) |")
        p(f"| RSS right at ready, {what}, median | {fmt(s['rss_ready_mib_median'], 1)} MiB |")
        if s.get("rss_settled_mib") is not None:
            p(f"| RSS after {s['settle_s']:g} s idle, {what} | {fmt(s['rss_settled_mib'], 1)} MiB |")
        if s.get("errors"):
            p(f"| startup errors | {'; '.join(s['errors'])} |")
    if "gateway" in idle:
        p(f"| RSS of the measured instance before any request | {fmt(idle['gateway']['rss_mib'], 1)} MiB |")
    if "gateway" in peak:
        p(f"| peak RSS under load (all scenarios) | {fmt(peak['gateway'], 1)} MiB |")
    for f in rows:
        if f["kind"] == "fill" and f.get("peak_rss_mib") is not None:
            peak[f["target"]] = max(peak.get(f["target"], 0.0), f["peak_rss_mib"])
    for t in targets:
        if t not in ("gateway", "direct") and t in idle:
            p(f"| {t}: idle RSS / peak RSS under load | {fmt(idle[t]['rss_mib'], 1)} / {fmt(peak.get(t), 1)} MiB |")
    p("")

    hp = [r for r in rows if r["kind"] == "criterion"]
    if hp:
        p("## Hot paths (`cargo bench --bench hot_paths -- --warm-up-time 1 --measurement-time 2`)")
        p("")
        p("| bench | time (criterion estimate, low-high) |")
        p("|---|---:|")
        for r in hp:
            p(f"| {r['name']} | {r['ns']:.1f} ns ({r['low_ns']:.1f}-{r['high_ns']:.1f}) |")
        p("")

    # ---- targets of the performance issue
    def add(t, s, c, k):
        return added(row(t, s, c), k)

    n64 = val("nginx-proxy", "chat", 64, "req_per_cpu_s")
    full64 = val("gateway-full", "chat", 64, "req_per_cpu_s")
    idle_rss = st["rss_ready_mib_median"] if st else (idle.get("gateway") or {}).get("rss_mib")
    rss64 = val("gateway", "chat", 64, "peak_rss_mib")
    rss64_full = val("gateway-full", "chat", 64, "peak_rss_mib")

    def xratio(sc, c):
        return ratio(cpu_ms(row("gateway", sc, c)), cpu_ms(row("gateway", BASELINE.get(sc, "stream"), c)))

    route = [r["ns"] for r in hp if r["name"].startswith("route_")]
    rl = next((r["ns"] for r in hp if r["name"] == "rate_limit_local_check"), None)
    l1_1 = ratio(val("gateway-cache", "chat", 1, "rps"), val("direct", "chat", 1, "rps"))
    l1_64 = ratio(val("gateway-cache", "chat", 64, "rps"), val("direct", "chat", 64, "rps"))
    l1m_1 = ratio(val("gateway-cache", "chat", 1, "rps"), val("mock-on-gw-cpu", "chat", 1, "rps"))
    l1m_64 = ratio(val("gateway-cache", "chat", 64, "rps"), val("mock-on-gw-cpu", "chat", 64, "rps"))
    checks = [
        ("added p50, non-streaming, c=1", "< 0.2 ms", add("gateway", "chat", 1, "p50_ms"), lambda v: v < 0.2, " ms", 3),
        ("added p50, non-streaming, c=1 (stretch)", "< 0.1 ms", add("gateway", "chat", 1, "p50_ms"), lambda v: v < 0.1, " ms", 3),
        ("added p99, non-streaming, c=64", "<= 1 ms", add("gateway", "chat", 64, "p99_ms"), lambda v: v <= 1.0, " ms", 3),
        ("req / gateway CPU-s at c=64, auth + limit + routing + metrics (`gateway-full`), vs nginx proxy_pass",
         ">= 0.7x", ratio(full64, n64), lambda v: v >= 0.7, "x", 2),
        ("the same, bare proxy path (`gateway`), for reference", ">= 0.7x",
         ratio(val("gateway", "chat", 64, "req_per_cpu_s"), n64), lambda v: v >= 0.7, "x", 2),
        ("added stream TTFB p50, c=16", "<= 0.5 ms", add("gateway", "stream", 16, "ttfb_p50_ms"), lambda v: v <= 0.5, " ms", 3),
        ("translated stream CPU vs pass-through, Anthropic provider -> OpenAI client, c=16", "<= 1.3x",
         xratio("stream-via-anthropic", 16), lambda v: v <= 1.3, "x", 2),
        ("translated stream CPU vs pass-through, OpenAI provider -> Anthropic client, c=16", "<= 1.3x",
         xratio("messages-stream", 16), lambda v: v <= 1.3, "x", 2),
        ("translated stream CPU vs pass-through, Anthropic provider -> OpenAI client, c=1", "<= 1.3x",
         xratio("stream-via-anthropic", 1), lambda v: v <= 1.3, "x", 2),
        ("translated stream CPU vs pass-through, OpenAI provider -> Anthropic client, c=1", "<= 1.3x",
         xratio("messages-stream", 1), lambda v: v <= 1.3, "x", 2),
    ]
    for sc, what in (("chat-gemini", "translated CPU vs pass-through, `gemini` provider, non-streaming"),
                     ("stream-gemini", "translated CPU vs pass-through, `gemini` provider, streamed"),
                     ("chat-bedrock", "translated CPU vs pass-through, `bedrock` provider, non-streaming"),
                     ("stream-bedrock", "translated CPU vs pass-through, `bedrock` provider, streamed")):
        for c in (16, 1):
            checks.append((f"{what}, c={c}", "<= 1.3x", xratio(sc, c), lambda v: v <= 1.3, "x", 2))
    checks += [
        ("L1 hit req/s vs direct upstream, c=1", "> 1x", l1_1, lambda v: v > 1, "x", 2),
        ("L1 hit req/s vs direct upstream, c=64", "> 1x", l1_64, lambda v: v > 1, "x", 2),
        ("L1 hit req/s vs the upstream on the gateway's core (`mock-on-gw-cpu`), c=1", "> 1x", l1m_1, lambda v: v > 1, "x", 2),
        ("L1 hit req/s vs the upstream on the gateway's core (`mock-on-gw-cpu`), c=64", "> 1x", l1m_64, lambda v: v > 1, "x", 2),
        ("idle RSS (at ready)", "<= 20 MiB", idle_rss, lambda v: v <= 20, " MiB", 1),
        ("peak RSS at c=64, bare proxy path (`gateway`)", "<= 40 MiB", rss64, lambda v: v <= 40, " MiB", 1),
        ("peak RSS at c=64, auth + tpm limit + routing (`gateway-full`)", "<= 40 MiB", rss64_full, lambda v: v <= 40, " MiB", 1),
        (f"startup to ready, {stm.get('models') if stm else 100}-model configuration (median)", "<= 50 ms",
         stm and stm["ready_ms_median"], lambda v: v <= 50, " ms", 1),
        ("routing decision, 10 deployments, slowest strategy (criterion)", "< 1 us",
         max(route) if route else None, lambda v: v < 1000, " ns", 1),
        ("local rate-limit check (criterion)", "< 200 ns", rl, lambda v: v < 200, " ns", 1),
    ]
    for r in slows:
        checks.append((f"{r['max_open']} concurrent slow streams (`{r['target']}`): peak RSS, no error",
                       "<= 300 MiB, 0 errors", r["peak_rss_mib"],
                       lambda v, e=r["errors"]: v <= 300 and e == 0, f" MiB, {r['errors']} errors", 1))
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
                         f"time, but they still delay wake-ups: p99 and throughput are pessimistic; CPU-ms "
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
