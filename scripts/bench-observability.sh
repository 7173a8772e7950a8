#!/usr/bin/env bash
# What observability costs: gateway throughput and CPU per request with
#   off      metrics and traces off (AI_GATEWAY_METRICS=off, no OTLP endpoint)
#   metrics  metrics on (the default), traces off
#   traces   metrics on + every request traced (OTEL_TRACES_SAMPLER=always_on), exported over
#            OTLP http/protobuf to a local sink
# in one run, rounds interleaved (the machine is noisy), medians reported.
# Placement: gateway on CPU 0; upstream (ai-gateway mock-server), OTLP sink and wrk on CPU 1.
#   scripts/bench-observability.sh            # ROUNDS=3 DURATION=10 CONNS=32
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/ai-gateway/target}"
BIN="${AI_GATEWAY_BIN:-$CARGO_TARGET_DIR/release/ai-gateway}"
ROUNDS="${ROUNDS:-3}"
DURATION="${DURATION:-10}"
CONNS="${CONNS:-32}"
MODES=(off metrics traces)

command -v wrk >/dev/null || { echo "wrk is needed (apt-get install wrk)" >&2; exit 1; }
[ -n "${AI_GATEWAY_BIN:-}" ] || cargo build --release --quiet --bin ai-gateway

work="$(mktemp -d)"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_http() { for _ in $(seq 1 200); do curl -fs -o /dev/null "$1" && return 0; sleep 0.05; done; echo "no answer from $1" >&2; return 1; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
TCK="$(getconf CLK_TCK)"

MOCK="$(free_port)"; SINK="$(free_port)"; GW="$(free_port)"
taskset -c 1 "$BIN" mock-server --listen "127.0.0.1:$MOCK" >/dev/null 2>&1 & pids+=($!)
cat > "$work/sink.py" <<'PY'
# An OTLP/HTTP sink: answers 200 to every export and counts them.
import sys, http.server, threading
count = {"posts": 0, "bytes": 0}
lock = threading.Lock()
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_POST(self):
        n = int(self.headers.get("content-length", 0)); self.rfile.read(n)
        with lock:
            count["posts"] += 1; count["bytes"] += n
        self.send_response(200); self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", "0"); self.end_headers()
    def do_GET(self):
        with lock:
            body = f'{count["posts"]} {count["bytes"]}'.encode()
        self.send_response(200); self.send_header("content-length", str(len(body))); self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a): pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
PY
taskset -c 1 python3 "$work/sink.py" "$SINK" & pids+=($!)
wait_http "http://127.0.0.1:$MOCK/health" 2>/dev/null || sleep 0.5
wait_http "http://127.0.0.1:$SINK/"

cat > "$work/gateway.yaml" <<YAML
server:
  listen: "127.0.0.1:$GW"
providers:
  - name: up
    type: openai
    base_url: "http://127.0.0.1:$MOCK/v1"
    api_key: sk-bench-upstream
models:
  - name: gpt-4o-mini
    deployments:
      - provider: up
        model: gpt-4o-mini
auth:
  keys:
    - name: bench
      key: sk-bench-caller
      models: ["*"]
cache:
  enabled: false
telemetry:
  log_format: json
  log_level: info
YAML
cat > "$work/post.lua" <<'LUA'
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer sk-bench-caller"
wrk.body = '{"model":"gpt-4o-mini","max_tokens":64,"messages":[{"role":"system","content":"You are a helpful assistant."},{"role":"user","content":"Say hello to the benchmark in a few words."}]}'
LUA

run_mode() { # mode -> prints "req/s cpu_us_per_req"
  local mode="$1" env=()
  case "$mode" in
    off) env=(AI_GATEWAY_METRICS=off) ;;
    metrics) env=() ;;
    traces) env=(OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:$SINK" OTEL_TRACES_SAMPLER=always_on) ;;
  esac
  env -u OTEL_EXPORTER_OTLP_ENDPOINT -u OTEL_EXPORTER_OTLP_TRACES_ENDPOINT -u RUST_LOG "${env[@]}" \
    taskset -c 0 "$BIN" --config "$work/gateway.yaml" serve >/dev/null 2>"$work/gw-$mode.log" &
  local gw=$!
  wait_http "http://127.0.0.1:$GW/health"
  taskset -c 1 wrk -t1 -c"$CONNS" -d2s -s "$work/post.lua" "http://127.0.0.1:$GW/v1/chat/completions" >/dev/null
  local c0; c0="$(cpu_ticks "$gw")"
  local out; out="$(taskset -c 1 wrk -t1 -c"$CONNS" -d"${DURATION}s" -s "$work/post.lua" "http://127.0.0.1:$GW/v1/chat/completions")"
  local c1; c1="$(cpu_ticks "$gw")"
  local rps; rps="$(awk '/Requests\/sec/ {print $2}' <<<"$out")"
  local total; total="$(awk '/requests in/ {print $1}' <<<"$out")"
  local non2xx; non2xx="$(awk '/Non-2xx/ {print $5}' <<<"$out")"
  [ -z "$non2xx" ] || { echo "$mode: $non2xx non-2xx answers" >&2; }
  if [ "$mode" != off ]; then
    local m; m="$(curl -fs "http://127.0.0.1:$GW/metrics")"
    grep -q '^ai_gateway_requests_total' <<<"$m" || echo "$mode: no metrics?" >&2
  fi
  kill -TERM "$gw"; wait "$gw" 2>/dev/null || true
  python3 -c "print(f'{$rps:.0f} {($c1-$c0)/$TCK/$total*1e6:.1f}')"
}

declare -A RPS CPU
for r in $(seq 1 "$ROUNDS"); do
  for m in "${MODES[@]}"; do
    read -r rps cpu < <(run_mode "$m")
    RPS[$m]+="$rps "; CPU[$m]+="$cpu "
    echo "round $r  $m: $rps req/s, $cpu CPU-us/req" >&2
  done
done
read -r posts bytes < <(curl -fs "http://127.0.0.1:$SINK/"; echo) || true
echo
echo "c=$CONNS, ${DURATION}s per step, $ROUNDS rounds; non-streamed chat, 1 upstream attempt per request"
printf '%-8s %12s %16s %12s\n' mode "req/s (med)" "CPU-us/req (med)" "cost vs off"
med() { tr ' ' '\n' <<<"$1" | grep -v '^$' | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
base_cpu="$(med "${CPU[off]}")"
for m in "${MODES[@]}"; do
  c="$(med "${CPU[$m]}")"
  printf '%-8s %12s %16s %11s%%\n' "$m" "$(med "${RPS[$m]}")" "$c" "$(python3 -c "print(f'{($c/$base_cpu-1)*100:+.1f}')")"
done
echo "OTLP sink received $posts exports ($bytes bytes) in the traces runs"
