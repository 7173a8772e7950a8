#!/usr/bin/env bash
# ai-gateway overhead benchmark, one command:  bench/run.sh
#
# 1. installs what is missing (wrk; nginx-light for the nginx row) with apt-get when root;
# 2. builds the gateway in release (CARGO_TARGET_DIR, default ~/.cache/ai-gateway/target);
# 3. starts the zero-latency upstream `ai-gateway mock-server` on 127.0.0.1:$MOCK_PORT,
#    pinned to $LOAD_CPU together with the load generator (wrk, lib/sse_probe.py);
# 4. measures startup-to-ready of the gateway ($STARTUP_RUNS starts), then each of $TARGETS:
#      direct       the mock itself (the baseline that "added" latency is taken against)
#      gateway      ai-gateway pinned to $GW_CPU, an `openai` provider pointing at the mock
#      nginx-proxy  nginx `proxy_pass` to the mock, pinned to $GW_CPU: the physical limit
#    over each of $SCENARIOS (chat: non-streaming at $CONCS; stream: SSE at $STREAM_CONCS);
# 5. prints a markdown report and writes it, the raw rows and the logs to
#    bench/results/<UTC time>/ (and bench/results/latest.md).
# Every process it starts is stopped by its pid on exit. Loopback only.
#
# Knobs (environment):
#   DURATION=5  WARMUP=2  CONCS="1 16 64"  STREAM_CONCS="1 16"  STARTUP_RUNS=5
#   TARGETS="direct gateway nginx-proxy"   (also: gateway-auth, gateway-cache, gateway-log;
#                                           add target_<name>)
#   SCENARIOS="chat stream"                (also: embeddings, messages-stream; add scenario_<name>)
#   GW_CPU=0  LOAD_CPU=1  MOCK_PORT=18080  GW_PORT=18081  PROXY_PORT=18090
#   GATEWAY_BIN=path   use this binary, skip the build
#   GW_LOG_LEVEL=warn  the gateway's telemetry.log_level (info = one access-log line per request)
#   INSTALL=0          never run apt-get (targets whose tools are missing are skipped)
#   NICE=-10           scheduling priority of everything measured (default -10 as root, else 0)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
cmdline="bench/run.sh${*:+ $*}"
for v in DURATION WARMUP CONCS STREAM_CONCS TARGETS SCENARIOS GATEWAY_BIN GW_LOG_LEVEL STARTUP_RUNS NICE; do
  [[ -n "${!v:-}" ]] && cmdline="$v=\"${!v}\" $cmdline"
done

DURATION="${DURATION:-5}"; WARMUP="${WARMUP:-2}"
CONCS="${CONCS:-1 16 64}"; STREAM_CONCS="${STREAM_CONCS:-1 16}"
STARTUP_RUNS="${STARTUP_RUNS:-5}"
TARGETS="${TARGETS:-direct gateway nginx-proxy}"; SCENARIOS="${SCENARIOS:-chat stream}"
GW_CPU="${GW_CPU:-0}"; LOAD_CPU="${LOAD_CPU:-1}"
MOCK_PORT="${MOCK_PORT:-18080}"; GW_PORT="${GW_PORT:-18081}"; PROXY_PORT="${PROXY_PORT:-18090}"
GW_LOG_LEVEL="${GW_LOG_LEVEL:-warn}"; INSTALL="${INSTALL:-1}"
if [[ "$(id -u)" == 0 ]]; then NICE="${NICE:--10}"; else NICE="${NICE:-0}"; fi
MODEL="gpt-4o-mini"; API_KEY="sk-bench-fake"

# ---------------------------------------------------------------- request bodies
# The mock echoes the last user message; streamed, one chunk per word. 18 words -> role chunk,
# 18 content chunks, finish chunk = 20 chunks, then `data: [DONE]` (as in the peers' baseline).
SYS='{"role":"system","content":"You are a helpful assistant."}'
USR='{"role":"user","content":"Please write one short friendly sentence that greets the reader and wishes them a very pleasant productive day"}'
CHAT_BODY="{\"model\":\"$MODEL\",\"messages\":[$SYS,$USR],\"max_tokens\":64}"
STREAM_BODY="{\"model\":\"$MODEL\",\"messages\":[$SYS,$USR],\"max_tokens\":64,\"stream\":true}"
EMB_BODY="{\"model\":\"$MODEL\",\"input\":\"The quick brown fox jumps over the lazy dog\"}"
MSG_STREAM_BODY="{\"model\":\"$MODEL\",\"max_tokens\":64,\"stream\":true,\"system\":\"You are a helpful assistant.\",\"messages\":[$USR]}"

# ---------------------------------------------------------------- processes we start
tmp="$(mktemp -d -t ai-gateway-bench.XXXXXX)"
started=()          # pids of the processes this script started and has not reaped yet
forget() {          # pid: drop from `started` once reaped, so a recycled pid is never signalled
  local p keep=()
  for p in ${started[@]+"${started[@]}"}; do [[ "$p" == "$1" ]] || keep+=("$p"); done
  started=(${keep[@]+"${keep[@]}"})
}
stop_pid() {        # pid: SIGTERM, wait up to 5 s, then SIGKILL; only pids we started
  local pid="$1"
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true
  fi
  wait "$pid" 2>/dev/null || true
  forget "$pid"
}
cleanup() {
  local i
  local pids=(${started[@]+"${started[@]}"})
  for ((i=${#pids[@]}-1; i>=0; i--)); do stop_pid "${pids[$i]}"; done
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say() { echo "== $*" >&2; }
note() { notes+=("$*"); echo "note: $*" >&2; }
notes=()
port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
wait_http() { # url timeout_s: until a 200
  python3 - "$1" "$2" <<'PY'
import sys, time, urllib.request
url, limit = sys.argv[1], float(sys.argv[2])
end = time.monotonic() + limit
while time.monotonic() < end:
    try:
        with urllib.request.urlopen(url, timeout=1) as r:
            if r.status == 200:
                sys.exit(0)
    except Exception:
        time.sleep(0.02)
sys.exit(1)
PY
}
rss_of() { python3 "$here/lib/procstat.py" rss "$1"; }

# ---------------------------------------------------------------- 1. tools
as_root() { if [[ "$(id -u)" == 0 ]]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else return 1; fi; }
apt_updated=""
apt_install() {
  [[ "$INSTALL" == 1 ]] || return 1
  [[ -n "$apt_updated" ]] || { as_root apt-get update -qq || return 1; apt_updated=1; }
  # Debian images of this kind have a policy-rc.d that keeps nginx's own service from starting.
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "$@" >/dev/null
}
command -v python3 >/dev/null || { echo "python3 is required" >&2; exit 1; }
command -v taskset >/dev/null || apt_install util-linux || { echo "taskset is required" >&2; exit 1; }
command -v wrk >/dev/null || { say "installing wrk"; apt_install wrk; } || { echo "wrk is required (apt-get install wrk)" >&2; exit 1; }
NGINX_BIN="$(command -v nginx || echo /usr/sbin/nginx)"
if [[ " $TARGETS " == *" nginx-proxy "* && ! -x "$NGINX_BIN" ]]; then
  say "installing nginx-light (for the nginx-proxy row only)"
  apt_install nginx-light || true
  NGINX_BIN="$(command -v nginx || echo /usr/sbin/nginx)"
  [[ -x "$NGINX_BIN" ]] || { note "nginx not available: nginx-proxy row skipped"; TARGETS="${TARGETS/nginx-proxy/}"; }
fi
ncpu="$(nproc)"
if (( ncpu < 2 )); then note "only $ncpu CPU: target and load share it; figures are not comparable"; GW_CPU=0; LOAD_CPU=0; fi

# ---------------------------------------------------------------- 2. build
built=0
if [[ -z "${GATEWAY_BIN:-}" ]]; then
  built=1
  export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/ai-gateway/target}"
  command -v cargo >/dev/null || { echo "cargo is required (or set GATEWAY_BIN)" >&2; exit 1; }
  say "cargo build --release (CARGO_TARGET_DIR=$CARGO_TARGET_DIR)"
  (cd "$root" && cargo build --release --quiet --bin ai-gateway)
  GATEWAY_BIN="$CARGO_TARGET_DIR/release/ai-gateway"
fi
[[ -x "$GATEWAY_BIN" ]] || { echo "no gateway binary at $GATEWAY_BIN" >&2; exit 1; }
# What the binary was built from (right after the build: others may commit during the run).
git_rev="$(cd "$root" && git rev-parse --short HEAD 2>/dev/null || echo '?')"
dirty="$(cd "$root" && git status --porcelain -- src Cargo.toml Cargo.lock 2>/dev/null | wc -l)"
[[ "$dirty" != 0 ]] && git_rev="$git_rev + $dirty uncommitted file(s) in src/Cargo"
if [[ "$built" == 0 ]]; then
  git_rev="unknown: prebuilt GATEWAY_BIN of $(date -u -r "$GATEWAY_BIN" '+%Y-%m-%d %H:%M UTC'); the work tree is at $git_rev"
fi
# Every measured process (mock, targets, load generator) runs through lib/prio.py at $NICE:
# its own session and scheduler autogroup at that nice, so that other sessions' builds on this
# machine do not take the measured cores' time. The build above ran at the normal priority.
prio=("$here/lib/prio.py" "$NICE")
if [[ "$NICE" != 0 ]] && ! "${prio[@]}" sh -c 'grep -q "nice '"$NICE"'" /proc/self/autogroup 2>/dev/null || [ "$(ps -o ni= -p $$ | tr -d " ")" = "'"$NICE"'" ]'; then
  note "could not raise the measured processes' priority to nice $NICE"
fi
GATEWAY_BIN="$(cd "$(dirname "$GATEWAY_BIN")" && pwd)/$(basename "$GATEWAY_BIN")"

for p in "$MOCK_PORT" "$GW_PORT" "$PROXY_PORT"; do
  if port_busy "$p"; then echo "127.0.0.1:$p is in use by another process; set MOCK_PORT/GW_PORT/PROXY_PORT" >&2; exit 1; fi
done

stamp="$(date -u +%Y%m%d-%H%M%S)"
out="$here/results/$stamp"; mkdir -p "$out"; rows="$out/rows.jsonl"; : > "$rows"
loadavg_start="$(cut -d' ' -f1-3 /proc/loadavg)"

# ---------------------------------------------------------------- gateway configuration
# gateway_config FILE [OVERLAY_JSON]: the bench configuration, deep-merged with OVERLAY_JSON.
# JSON (valid YAML too). Base = the bare proxy path: one `openai` provider at the mock, one model,
# no auth section, cache off.
gateway_config() {
  local file="$1" overlay="${2:-{\}}"
  mkdir -p "$(dirname "$file")/data"
  python3 - "$file" "$overlay" <<PY
import json, sys
base = {
  "server": {"listen": "127.0.0.1:$GW_PORT"},
  "state": {"data_dir": sys.argv[1].rsplit("/", 1)[0] + "/data"},
  "providers": [{"name": "upstream", "type": "openai", "base_url": "http://127.0.0.1:$MOCK_PORT/v1",
                 "api_key": "sk-upstream-fake"}],
  "models": [{"name": "$MODEL", "deployments": [{"provider": "upstream", "model": "$MODEL"}]}],
  "cache": {"enabled": False},
  "telemetry": {"log_level": "$GW_LOG_LEVEL", "log_format": "json"},
}
def merge(a, b):
    for k, v in b.items():
        a[k] = merge(a[k], v) if isinstance(v, dict) and isinstance(a.get(k), dict) else v
    return a
with open(sys.argv[1], "w") as f:
    json.dump(merge(base, json.loads(sys.argv[2])), f, indent=1)
PY
}
gateway_cmd() { GW_CMD=(env -u RUST_LOG "$GATEWAY_BIN" --config "$1" serve); }

# ---------------------------------------------------------------- measuring functions
# measure KIND SCENARIO PATH BODY [HEADER ...] -> rows for the current target
#   EXPECT=text in the environment: what the smoke-test answer must contain
#   KIND wrk (closed-loop HTTP load at $CONCS) or sse (streams at $STREAM_CONCS)
#   the current target is T_LABEL (row label), T_BASE (http://127.0.0.1:port), T_PID, T_HDRS
measure() {
  local kind="$1" scenario="$2" path="$3" body="$4"; shift 4
  local concs="$CONCS"; [[ "$kind" == sse ]] && concs="$STREAM_CONCS"
  local h args=()
  for h in "${T_HDRS[@]}" "$@"; do args+=(-H "$h"); done
  run_wait "${prio[@]}" taskset -c "$LOAD_CPU" python3 "$here/lib/measure.py" --target "$T_LABEL" \
    --scenario "$scenario" --kind "$kind" --url "$T_BASE$path" --body "$body" --concs "$concs" \
    --duration "$DURATION" --warmup "$WARMUP" --pid "$T_PID" --gw-cpu "$GW_CPU" --load-cpu "$LOAD_CPU" \
    --out "$rows" --expect "${EXPECT:-}" "${args[@]}"
}
# Scenarios: one function each, over (label, url, body, headers) through `measure`.
scenario_chat()            { measure wrk chat /v1/chat/completions "$CHAT_BODY"; }
scenario_stream()          { measure sse stream /v1/chat/completions "$STREAM_BODY"; }
scenario_embeddings()      { EXPECT='"embedding"' measure wrk embeddings /v1/embeddings "$EMB_BODY"; }
# Anthropic client -> gateway /v1/messages -> OpenAI upstream, translated stream.
# `direct` serves /v1/messages from the mock itself (its own translation), so "added" compares
# against that.
scenario_messages_stream() { measure sse messages-stream /v1/messages "$MSG_STREAM_BODY" 'anthropic-version: 2023-06-01'; }

# bench_target LABEL BASE PID [HEADER ...]: idle RSS, then every scenario
bench_target() {
  T_LABEL="$1"; T_BASE="$2"; T_PID="$3"; shift 3; T_HDRS=("$@")
  python3 -c 'import json,sys; print(json.dumps({"target":sys.argv[1],"scenario":"idle","kind":"idle","rss_mib":float(sys.argv[2])}))' \
    "$T_LABEL" "$(rss_of "$T_PID")" >> "$rows"
  local s
  for s in $SCENARIOS; do
    declare -F "scenario_${s//-/_}" >/dev/null || { note "unknown scenario $s"; continue; }
    "scenario_${s//-/_}"
  done
}

start_bg() { # NAME CPU CMD...: start pinned, in the background, log to $out/NAME.log; sets BG_PID
  local name="$1" cpu="$2"; shift 2
  "${prio[@]}" taskset -c "$cpu" "$@" >"$out/$name.log" 2>&1 &
  BG_PID=$!; started+=("$BG_PID")
}
run_wait() { # CMD...: run in the background and wait for it (so INT/TERM reach the trap at once)
  "$@" & local pid=$!; started+=("$pid")
  local rc=0; wait "$pid" || rc=$?
  forget "$pid"
  (( rc == 0 )) || { note "exit status $rc from: $(printf '%s ' "$@" | cut -c1-200)"; failed=1; }
}

# ---------------------------------------------------------------- targets
# target_<name>: start the target (pinned to $GW_CPU), bench_target it, stop it by pid.
# run_gateway LABEL [OVERLAY_JSON [HEADER ...]]: the gateway with the bench config + overlay.
run_gateway() {
  local label="$1" overlay="${2:-{\}}"; shift 2 || shift $#
  local dir="$tmp/$label"; mkdir -p "$dir"
  gateway_config "$dir/gateway.json" "$overlay"; gateway_cmd "$dir/gateway.json"
  say "$label on 127.0.0.1:$GW_PORT (CPU $GW_CPU), log level $GW_LOG_LEVEL"
  (cd "$dir" && exec "${prio[@]}" taskset -c "$GW_CPU" "${GW_CMD[@]}" >"$out/$label.log" 2>&1) &
  local pid=$!; started+=("$pid")
  if ! wait_http "http://127.0.0.1:$GW_PORT/health" 10; then
    note "$label did not start: $(tail -c 300 "$out/$label.log" | tr '\n' ' ')"; failed=1
    stop_pid "$pid"; return 0
  fi
  bench_target "$label" "http://127.0.0.1:$GW_PORT" "$pid" "${auth[@]}" "$@"
  stop_pid "$pid"
}
target_direct()  { say "direct: the mock itself"; bench_target direct "http://127.0.0.1:$MOCK_PORT" "$mock_pid" "${auth[@]}"; }
target_gateway() { run_gateway gateway '{}'; }
# Same path plus auth: a static key (checked on every request) with generous rate limits.
target_gateway_auth() {
  run_gateway gateway-auth "{\"auth\": {\"keys\": [{\"name\": \"bench\", \"key\": \"$API_KEY\", \"rpm\": 1000000000, \"tpm\": 1000000000000}]}}"
}
# Cache on (L1 only, no Redis): after the first request every identical request is a hit.
target_gateway_cache() { run_gateway gateway-cache '{"cache": {"enabled": true}}'; }
# Same path with one access-log line per request (JSON, to the log file).
target_gateway_log() { GW_LOG_LEVEL=info run_gateway gateway-log '{}'; }
target_nginx_proxy() {
  say "nginx-proxy on 127.0.0.1:$PROXY_PORT (CPU $GW_CPU)"
  mkdir -p "$tmp/nginx"
  sed "s/__PORT__/$PROXY_PORT/; s/__UPSTREAM__/$MOCK_PORT/" "$here/limit/nginx-proxy.conf" > "$tmp/nginx/nginx.conf"
  "$NGINX_BIN" -t -q -p "$tmp/nginx/" -c nginx.conf -e stderr
  start_bg nginx-proxy "$GW_CPU" "$NGINX_BIN" -p "$tmp/nginx/" -c nginx.conf -e stderr -g 'daemon off;'
  local pid="$BG_PID"
  if ! wait_http "http://127.0.0.1:$PROXY_PORT/health" 10; then
    note "nginx-proxy did not start: $(tail -c 300 "$out/nginx-proxy.log" | tr '\n' ' ')"; failed=1
    stop_pid "$pid"; return 0
  fi
  bench_target nginx-proxy "http://127.0.0.1:$PROXY_PORT" "$pid" "${auth[@]}"
  stop_pid "$pid"
}

# ---------------------------------------------------------------- 3. upstream
say "mock upstream on 127.0.0.1:$MOCK_PORT (CPU $LOAD_CPU)"
start_bg mock "$LOAD_CPU" "$GATEWAY_BIN" mock-server --listen "127.0.0.1:$MOCK_PORT"
mock_pid="$BG_PID"
wait_http "http://127.0.0.1:$MOCK_PORT/health" 10 || { echo "mock did not start; see $out/mock.log" >&2; exit 1; }

# ---------------------------------------------------------------- 4. startup, then targets
auth=("Authorization: Bearer $API_KEY")
failed=0
if [[ " $TARGETS " == *" gateway "* && "$STARTUP_RUNS" -gt 0 ]]; then
  say "gateway startup to ready, $STARTUP_RUNS starts (CPU $GW_CPU)"
  mkdir -p "$tmp/startup"; gateway_config "$tmp/startup/gateway.json"; gateway_cmd "$tmp/startup/gateway.json"
  run_wait "${prio[@]}" taskset -c "$LOAD_CPU" python3 "$here/lib/startup.py" --runs "$STARTUP_RUNS" \
    --port "$GW_PORT" --gw-cpu "$GW_CPU" --cwd "$tmp/startup" --log "$out/gateway-startup.log" \
    --out "$rows" -- "${GW_CMD[@]}"
fi
for t in $TARGETS; do
  if declare -F "target_${t//-/_}" >/dev/null; then "target_${t//-/_}"; else note "unknown target $t"; fi
done

# ---------------------------------------------------------------- 5. report
notes_json="$(python3 -c 'import json,sys; print(json.dumps(sys.argv[1:]))' ${notes[@]+"${notes[@]}"})"
META_OUT="$out/meta.json" CMDLINE="$cmdline" GIT_REV="$git_rev" LOADAVG_START="$loadavg_start" \
GATEWAY_BIN="$GATEWAY_BIN" NGINX_BIN="$NGINX_BIN" TARGETS="$TARGETS" NOTES="$notes_json" \
GW_CPU="$GW_CPU" LOAD_CPU="$LOAD_CPU" DURATION="$DURATION" WARMUP="$WARMUP" GW_LOG_LEVEL="$GW_LOG_LEVEL" NICE="$NICE" \
python3 - <<'PY'
import datetime, json, os, platform, subprocess
e = os.environ
def first_line(*c):
    try:
        r = subprocess.run(c, capture_output=True, text=True)
        return (r.stdout + r.stderr).strip().splitlines()[0]
    except Exception:
        return None
model = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
mem = next((l.split()[1] for l in open("/proc/meminfo") if l.startswith("MemTotal")), "0")
meta = {
    "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    "command": e["CMDLINE"], "nproc": os.cpu_count(), "cpu_model": model,
    "mem": f"{int(mem) / 1048576:.0f} GiB", "kernel": platform.release(),
    "loadavg_start": e["LOADAVG_START"], "loadavg_end": " ".join(open("/proc/loadavg").read().split()[:3]),
    "git": e["GIT_REV"], "gateway_bin": e["GATEWAY_BIN"],
    "gateway_version": first_line(e["GATEWAY_BIN"], "--version"),
    "wrk_version": (first_line("wrk", "-v") or "wrk").split(" [")[0],
    "nginx": first_line(e["NGINX_BIN"], "-v") if "nginx-proxy" in e["TARGETS"].split() else None,
    "gw_cpu": int(e["GW_CPU"]), "load_cpu": int(e["LOAD_CPU"]), "duration": float(e["DURATION"]),
    "warmup": float(e["WARMUP"]), "log_level": e["GW_LOG_LEVEL"], "notes": json.loads(e["NOTES"]), "nice": int(e["NICE"]),
}
with open(e["META_OUT"], "w") as f:
    json.dump(meta, f, indent=1)
PY
python3 "$here/lib/report.py" "$out" > "$out/report.md"
cp "$out/report.md" "$here/results/latest.md"
cat "$out/report.md"
say "results in ${out#$root/}/ (report.md, rows.jsonl, meta.json, logs)"
exit "$failed"
