#!/usr/bin/env bash
# The same three modes as bench-observability.sh, counted in CPU instructions per request under
# valgrind's callgrind: deterministic, so the cost of metrics shows even on a busy machine.
# Counts the whole gateway process (workers, metrics upkeep, trace export threads) over N requests
# after a warm-up.   scripts/count-observability.sh   (REQUESTS=2000)
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/ai-gateway/target}"
BIN="${AI_GATEWAY_BIN:-$CARGO_TARGET_DIR/release/ai-gateway}"
REQUESTS="${REQUESTS:-2000}"
command -v valgrind >/dev/null || { echo "valgrind is needed (apt-get install valgrind)" >&2; exit 1; }
[ -n "${AI_GATEWAY_BIN:-}" ] || cargo build --release --quiet --bin ai-gateway

work="$(mktemp -d)"; pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; [ -n "${KEEP:-}" ] && echo "kept $work" >&2 || rm -rf "$work"; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_http() { for _ in $(seq 1 600); do curl -fs -o /dev/null "$1" && return 0; sleep 0.1; done; echo "no answer from $1" >&2; return 1; }

MOCK="$(free_port)"; SINK="$(free_port)"; GW="$(free_port)"
"$BIN" mock-server --listen "127.0.0.1:$MOCK" >/dev/null 2>&1 & pids+=($!)
python3 - "$SINK" >/dev/null 2>&1 <<'PY' & pids+=($!)
import sys, http.server
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_POST(self):
        self.rfile.read(int(self.headers.get("content-length", 0)))
        self.send_response(200); self.send_header("content-length", "0"); self.end_headers()
    def do_GET(self):
        self.send_response(200); self.send_header("content-length", "0"); self.end_headers()
    def log_message(self, *a): pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
PY
wait_http "http://127.0.0.1:$MOCK/health"; wait_http "http://127.0.0.1:$SINK/"
cat > "$work/gateway.yaml" <<YAML
server: {listen: "127.0.0.1:$GW"}
providers: [{name: up, type: openai, base_url: "http://127.0.0.1:$MOCK/v1", api_key: sk-bench-upstream}]
models: [{name: gpt-4o-mini, deployments: [{provider: up, model: gpt-4o-mini}]}]
auth: {keys: [{name: bench, key: sk-bench-caller, models: ["*"]}]}
cache: {enabled: false}
telemetry: {log_format: json, log_level: info}
YAML
BODY='{"model":"gpt-4o-mini","max_tokens":64,"messages":[{"role":"system","content":"You are a helpful assistant."},{"role":"user","content":"Say hello to the benchmark in a few words."}]}'
send() { # n requests over 4 keep-alive connections
  python3 - "$GW" "$1" "$BODY" <<'PY'
import sys, http.client, threading
port, n, body = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
def worker(k):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    for _ in range(k):
        c.request("POST", "/v1/chat/completions", body, {"content-type": "application/json", "authorization": "Bearer sk-bench-caller"})
        r = c.getresponse(); r.read()
        assert r.status == 200, r.status
ts = [threading.Thread(target=worker, args=(n // 4,)) for _ in range(4)]
[t.start() for t in ts]; [t.join() for t in ts]
PY
}
declare -A IR
for mode in off metrics traces; do
  env=()
  case "$mode" in
    off) env=(AI_GATEWAY_METRICS=off) ;;
    traces) env=(OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:$SINK" OTEL_TRACES_SAMPLER=always_on OTEL_BSP_SCHEDULE_DELAY=200) ;;
  esac
  env -u OTEL_EXPORTER_OTLP_ENDPOINT -u RUST_LOG "${env[@]}" valgrind --tool=callgrind --instr-atstart=no \
    --callgrind-out-file="$work/cg.$mode" "$BIN" --config "$work/gateway.yaml" serve >/dev/null 2>"$work/vg.$mode" &
  vg=$!
  wait_http "http://127.0.0.1:$GW/health"
  send 400                                   # warm-up: connections, caches, label sets
  callgrind_control -i on "$vg" >/dev/null
  send "$REQUESTS"
  sleep 1                                    # let a trace export batch go out
  callgrind_control -i off "$vg" >/dev/null
  kill -TERM "$vg"; wait "$vg" 2>/dev/null || true
  total=0
  for f in "$work"/cg."$mode"*; do
    t="$(awk '/^totals:/ {s+=$2} END {print s+0}' "$f")"; total=$((total + ${t:-0}))
  done
  IR[$mode]=$total
  echo "$mode: $((total / REQUESTS)) instructions/request" >&2
done
echo
echo "$REQUESTS non-streamed chat requests after 400 warm-up ones, whole process, callgrind"
printf '%-8s %16s %12s\n' mode "instr/request" "vs off"
for m in off metrics traces; do
  printf '%-8s %16s %11s%%\n' "$m" "$((IR[$m] / REQUESTS))" "$(python3 -c "print(f'{(${IR[$m]}/${IR[off]}-1)*100:+.2f}')")"
done
