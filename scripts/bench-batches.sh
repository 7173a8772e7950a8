#!/usr/bin/env bash
# Batch API benchmark, loopback only, against the built-in zero-latency mock provider:
#  1. lines/s through the batch path (upload, create, wait for completed) vs the same requests
#     sent synchronously with wrk at the same concurrency;
#  2. peak gateway RSS (VmHWM) while uploading, running and downloading a ~100 MiB input file,
#     next to its idle RSS.
#   scripts/bench-batches.sh [LINES] [CONCURRENCY] [BIG_MIB]
# Needs a release build (cargo build --release), curl, wrk, python3.
set -euo pipefail
lines=${1:-20000}; conc=${2:-64}; big_mib=${3:-100}
cd "$(dirname "$0")/.."
BIN=${BIN:-${CARGO_TARGET_DIR:-target}/release/ai-gateway}
work=$(mktemp -d); trap 'kill $(jobs -p) 2>/dev/null; wait 2>/dev/null; rm -rf "$work"' EXIT
port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
gw_port=$(port)
start_gw() {
  cat > "$work/g.json" <<JSON
{"server": {"listen": "127.0.0.1:$gw_port", "max_body_size": "1MiB"}, "state": {"data_dir": "$work/data$1"},
 "providers": [{"name": "local", "type": "mock", "latency": "0ms"}],
 "models": [{"name": "mock", "deployments": [{"provider": "local", "model": "mock"}]}],
 "cache": {"enabled": false}, "jobs": {"workers": $conc}, "batches": {"concurrency": $conc},
 "telemetry": {"log_level": "warn", "log_format": "json"}}
JSON
  "$BIN" --config "$work/g.json" >"$work/gw.log" 2>&1 & gw_pid=$!
  for _ in $(seq 100); do curl -sf "127.0.0.1:$gw_port/health" >/dev/null && return; sleep 0.1; done
  echo "gateway did not start"; cat "$work/gw.log"; exit 1
}
stop_gw() { kill "$gw_pid"; wait "$gw_pid" 2>/dev/null || true; }
rss_kib() { awk -v k="$2" '$1==k":" {print $2}' "/proc/$1/status"; }
make_input() { # $1 lines, $2 padding bytes per line, $3 file
  python3 - "$1" "$2" "$3" <<'PY'
import json, sys
n, pad, path = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
with open(path, "w") as f:
    for i in range(n):
        f.write(json.dumps({"custom_id": f"r{i}", "method": "POST", "url": "/v1/chat/completions",
            "body": {"model": "mock", "messages": [{"role": "user", "content": f"line {i} " + "x" * pad}]}}) + "\n")
PY
}
run_batch() { # $1 input file; prints seconds from create to completed
  fid=$(curl -sf -F purpose=batch -F "file=@$1" "127.0.0.1:$gw_port/v1/files" | python3 -c 'import json,sys;print(json.load(sys.stdin)["id"])')
  # Create, then poll every 5 ms on one kept-alive connection (a curl + python per poll every
  # 0.1 s added up to ~0.15 s to a batch of well under a second).
  python3 - "$gw_port" "$fid" > "$work/run.json" <<'PY'
import http.client, json, sys, time
port, fid = int(sys.argv[1]), sys.argv[2]
c = http.client.HTTPConnection("127.0.0.1", port)
body = json.dumps({"input_file_id": fid, "endpoint": "/v1/chat/completions", "completion_window": "24h"})
t0 = time.monotonic()
c.request("POST", "/v1/batches", body, {"content-type": "application/json"})
b = json.loads(c.getresponse().read())
# When each status was first seen (to within a poll): where the batch's time went.
phases = [(b["status"], 0.0)]
while b["status"] not in ("completed", "failed", "cancelled", "expired"):
    time.sleep(0.005)
    c.request("GET", "/v1/batches/" + b["id"])
    b = json.loads(c.getresponse().read())
    if b["status"] != phases[-1][0]:
        phases.append((b["status"], time.monotonic() - t0))
print(json.dumps({"secs": time.monotonic() - t0, "batch": b, "phases": phases}))
PY
  python3 -c '
import json, sys
r = json.load(open(sys.argv[1]))
p = r["phases"] + [("end", r["secs"])]
spans = ", ".join(f"{s} {(p[i + 1][1] - t) * 1000:.0f} ms" for i, (s, t) in enumerate(p[:-1]))
print("  status", r["batch"]["status"], r["batch"]["request_counts"], "|", spans)' "$work/run.json" >&2
  out=$(python3 -c 'import json,sys;print(json.load(open(sys.argv[1]))["batch"]["output_file_id"])' "$work/run.json")
  curl -sf "127.0.0.1:$gw_port/v1/files/$out/content" -o "$work/out.jsonl"
  python3 -c "import json,sys;print('%.3f' % json.load(open(sys.argv[1]))['secs'])" "$work/run.json"
}

echo "== batch path: $lines lines, concurrency $conc, zero-latency mock"
start_gw 1
make_input "$lines" 0 "$work/in.jsonl"
secs=$(run_batch "$work/in.jsonl")
python3 -c "print(f'  {$lines} lines in {$secs} s: {$lines/$secs:.0f} lines/s')"
stop_gw

echo "== synchronous: the same request, wrk -t1 -c$conc -d10s"
start_gw 2
cat > "$work/post.lua" <<'LUA'
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
counter = 0
request = function()
  counter = counter + 1
  return wrk.format(nil, nil, nil, '{"model":"mock","messages":[{"role":"user","content":"line ' .. counter .. '"}]}')
end
LUA
wrk -t1 -c"$conc" -d10s -s "$work/post.lua" "http://127.0.0.1:$gw_port/v1/chat/completions" | grep -E "Requests/sec|Non-2xx"
stop_gw

echo "== RSS with a ${big_mib} MiB input (upload, run, download)"
start_gw 3
big_lines=$((big_mib * 1024))
make_input "$big_lines" 880 "$work/big.jsonl"
echo "  input: $(du -m "$work/big.jsonl" | cut -f1) MiB, $big_lines lines"
sleep 1
idle=$(rss_kib "$gw_pid" VmRSS)
secs=$(run_batch "$work/big.jsonl")
peak=$(rss_kib "$gw_pid" VmHWM)
python3 -c "print(f'  idle RSS {$idle/1024:.0f} MiB, peak RSS {$peak/1024:.0f} MiB (+{($peak-$idle)/1024:.0f} MiB), ran in {$secs} s, output $(du -m "$work/out.jsonl" | cut -f1) MiB')"
stop_gw
