#!/usr/bin/env bash
# ai-gateway overhead benchmark, one command:  bench/run.sh
#
# 1. installs what is missing (wrk; nginx-light for the nginx row) with apt-get when root;
# 2. builds the gateway as the image does (`dist` profile, profile-guided: scripts/build-dist.sh;
#    PGO=0 without the profile-guided steps, PROFILE=release for the quick one;
#    CARGO_TARGET_DIR, default ~/.cache/ai-gateway/target);
# 3. starts the zero-latency upstream `ai-gateway mock-server` on 127.0.0.1:$MOCK_PORT,
#    pinned to $LOAD_CPU together with the load generator (wrk, lib/sse_probe.py);
# 4. measures startup-to-ready of the gateway ($STARTUP_RUNS starts), then each of $TARGETS:
#      direct       the mock itself (the baseline that "added" latency is taken against)
#      gateway      ai-gateway pinned to $GW_CPU, an `openai` provider pointing at the mock
#      nginx-proxy  nginx `proxy_pass` to the mock, pinned to $GW_CPU: the physical limit
#    over each of $SCENARIOS (chat, chat-gemini, chat-bedrock: non-streaming at $CONCS; stream,
#    stream-via-anthropic, messages-stream, stream-gemini, stream-bedrock: SSE at $STREAM_CONCS;
#    the -gemini / -bedrock ones through a `gemini` / `bedrock` provider at the mock's Gemini and
#    Converse APIs, translated), then the feature targets (routing over 3
#    deployments, auth + rate limits local and shared through Redis, cache L1 / L2 hits, RSS with
#    $FILL_N cached answers) on the scenarios that concern them; a redis-server is started on a
#    free port for the targets that need one;
# 5. runs the criterion hot-path benches (`cargo bench --bench hot_paths`, HOT_PATHS=1);
# 6. prints a markdown report and writes it, the raw rows and the logs to
#    bench/results/<UTC time>/ (and bench/results/latest.md).
# Every process it starts is stopped by its pid on exit. Loopback only.
#
# Knobs (environment):
#   DURATION=5  WARMUP=2  CONCS="1 16 64"  STREAM_CONCS="1 16"  STARTUP_RUNS=5
#   TARGETS="direct gateway nginx-proxy gateway-full gateway-route-least-busy gateway-route-latency
#            gateway-auth gateway-auth-shared mock-on-gw-cpu gateway-cache gateway-cache-l2 gateway-cache-100k"
#                                          (also: gateway-log, gateway-auth-shared-cluster, gateway-no-request-log,
#                                           gateway-route-hedge, gateway-full-hedge,
#                                           gateway-auth-no-request-log; add target_<name>)
#   SCENARIOS="chat stream stream-via-anthropic messages-stream chat-gemini stream-gemini chat-bedrock
#              stream-bedrock"             (also: embeddings, responses, responses-stored; add scenario_<name>)
#   ROUTE_CONCS="64" AUTH_CONCS="64" CACHE_CONCS="1 64"  concurrencies of the feature targets (chat)
#   FILL_N=100000      cached answers for the RSS figure   REDIS_CALLS_N=1000  requests counted in Redis
#   L2_KEYS=10000      distinct requests the L2 rows cycle over
#   STARTUP_MODELS=100 models of the second startup configuration (0 = skip)
#   HOT_PATHS=1        run `cargo bench --bench hot_paths` (0 = skip; needs cargo)
#   HOT_PATHS_BIN=path run this prebuilt criterion executable of hot_paths instead of building it
#   REDIS_PORT=0       redis-server port (0 = a free one)
#   GW_CPU=0  LOAD_CPU=1  MOCK_PORT=18080  GW_PORT=18081  PROXY_PORT=18090
#   NGINX_SCENARIOS="chat stream"  the scenarios the nginx row runs (it does not translate)
#   PROFILE=dist       the cargo profile built (dist: fat LTO and profile-guided, as in the image,
#                      scripts/build-dist.sh; release: quick build)   PGO=0: dist without the PGO steps
#   GATEWAY_BIN=path   use this binary, skip the build (GATEWAY_REV=text: what it was built from)
#   GW_LOG_LEVEL=warn  the gateway's telemetry.log_level (info = one access-log line per request)
#   INSTALL=0          never run apt-get (targets whose tools are missing are skipped)
#   NICE=-10           scheduling priority of everything measured (default -10 as root, else 0)
#   REPEAT=1           rounds of the whole target list (targets interleaved round by round); the
#                      report gives each wrk/stream figure as the median over the rounds
set -euo pipefail
# Descriptors: the slow-streams targets hold 2 per stream in the gateway (client + upstream).
ulimit -Hn 1048576 2>/dev/null || true
ulimit -Sn "$(ulimit -Hn)" 2>/dev/null || true
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
cmdline="bench/run.sh${*:+ $*}"
for v in DURATION WARMUP CONCS STREAM_CONCS TARGETS SCENARIOS GATEWAY_BIN GW_LOG_LEVEL STARTUP_RUNS NICE REPEAT PROFILE PGO \
         ROUTE_CONCS AUTH_CONCS CACHE_CONCS FILL_N L2_KEYS STARTUP_MODELS HOT_PATHS HOT_PATHS_BIN SLOW_N SLOW_LATENCY; do
  [[ -n "${!v:-}" ]] && cmdline="$v=\"${!v}\" $cmdline"
done

DURATION="${DURATION:-5}"; WARMUP="${WARMUP:-2}"; REPEAT="${REPEAT:-1}"
CONCS="${CONCS:-1 16 64}"; STREAM_CONCS="${STREAM_CONCS:-1 16}"
STARTUP_RUNS="${STARTUP_RUNS:-5}"
TARGETS="${TARGETS:-direct gateway nginx-proxy gateway-full gateway-route-least-busy gateway-route-latency gateway-auth gateway-auth-shared mock-on-gw-cpu gateway-cache gateway-cache-l2 gateway-cache-100k gateway-slow-streams gateway-slow-streams-local}"
SCENARIOS="${SCENARIOS:-chat stream stream-via-anthropic messages-stream chat-gemini stream-gemini chat-bedrock stream-bedrock}"
NGINX_SCENARIOS="${NGINX_SCENARIOS:-chat stream}"
ROUTE_CONCS="${ROUTE_CONCS:-64}"; AUTH_CONCS="${AUTH_CONCS:-64}"; CACHE_CONCS="${CACHE_CONCS:-1 64}"
SLOW_N="${SLOW_N:-10000}"; SLOW_LATENCY="${SLOW_LATENCY:-500ms}"
FILL_N="${FILL_N:-100000}"; REDIS_CALLS_N="${REDIS_CALLS_N:-1000}"; L2_KEYS="${L2_KEYS:-10000}"; STARTUP_MODELS="${STARTUP_MODELS:-100}"
REDIS_PORT="${REDIS_PORT:-0}"
if command -v cargo >/dev/null; then HOT_PATHS="${HOT_PATHS:-1}"; else HOT_PATHS="${HOT_PATHS:-0}"; fi
GW_CPU="${GW_CPU:-0}"; LOAD_CPU="${LOAD_CPU:-1}"
MOCK_PORT="${MOCK_PORT:-18080}"; GW_PORT="${GW_PORT:-18081}"; PROXY_PORT="${PROXY_PORT:-18090}"
GW_LOG_LEVEL="${GW_LOG_LEVEL:-warn}"; INSTALL="${INSTALL:-1}"
if [[ "$(id -u)" == 0 ]]; then NICE="${NICE:--10}"; else NICE="${NICE:-0}"; fi
MODEL="gpt-4o-mini"; API_KEY="sk-bench-fake"
XMODEL="claude-bench"   # served by the `anthropic`-type provider pointed at the mock (translated)
GMODEL="gemini-bench"   # the `gemini`-type provider at the mock's Gemini API (translated)
BMODEL="bedrock-bench"  # the `bedrock`-type provider at the mock's Converse API (translated, SigV4-signed)

# ---------------------------------------------------------------- request bodies
# The mock echoes the last user message; streamed, one chunk per word. 18 words -> role chunk,
# 18 content chunks, finish chunk = 20 chunks, then `data: [DONE]` (as in the peers' baseline).
. "$here/lib/prompt.sh"   # SYS, USR
CHAT_BODY="{\"model\":\"$MODEL\",\"messages\":[$SYS,$USR],\"max_tokens\":64}"
# The same prompt as a Responses API call (translated to chat for the OpenAI-type upstream and its
# answer back): without `store`, and stored (the default).
RESP_BODY="{\"model\":\"$MODEL\",\"instructions\":\"You are a helpful assistant.\",\"input\":\"Please write one short friendly sentence that greets the reader and wishes them a very pleasant productive day\",\"max_output_tokens\":64,\"store\":false}"
RESP_STORED_BODY="${RESP_BODY/,\"store\":false/}"
STREAM_BODY="{\"model\":\"$MODEL\",\"messages\":[$SYS,$USR],\"max_tokens\":64,\"stream\":true}"
EMB_BODY="{\"model\":\"$MODEL\",\"input\":\"The quick brown fox jumps over the lazy dog\"}"
MSG_STREAM_BODY="{\"model\":\"$MODEL\",\"max_tokens\":64,\"stream\":true,\"system\":\"You are a helpful assistant.\",\"messages\":[$USR]}"
# The same OpenAI stream request for a model served by the `anthropic` provider: the gateway
# sends Anthropic's request to the mock's /v1/messages and turns its events into OpenAI chunks.
XLATE_STREAM_BODY="{\"model\":\"$XMODEL\",\"messages\":[$SYS,$USR],\"max_tokens\":64,\"stream\":true}"
# The same OpenAI requests, plain and streamed, for the models served by the `gemini` and
# `bedrock` providers: the gateway sends Gemini's / Converse's request to the mock and turns its
# answer (Gemini SSE events; Converse JSON or AWS event-stream frames) into OpenAI's.
GEMINI_CHAT_BODY="{\"model\":\"$GMODEL\",\"messages\":[$SYS,$USR],\"max_tokens\":64}"
GEMINI_STREAM_BODY="{\"model\":\"$GMODEL\",\"messages\":[$SYS,$USR],\"max_tokens\":64,\"stream\":true}"
BEDROCK_CHAT_BODY="{\"model\":\"$BMODEL\",\"messages\":[$SYS,$USR],\"max_tokens\":64}"
BEDROCK_STREAM_BODY="{\"model\":\"$BMODEL\",\"messages\":[$SYS,$USR],\"max_tokens\":64,\"stream\":true}"
# Distinct chat requests of the same shape (18 words, one of them the index): cache fills and L2.
CHAT_FMT="{\"model\":\"$MODEL\",\"messages\":[$SYS,{\"role\":\"user\",\"content\":\"Please write one short friendly sentence that greets the reader and wishes them a %d pleasant productive day\"}],\"max_tokens\":64}"

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
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
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
  # The image's build (fat LTO, profile-guided: scripts/build-dist.sh): the figures are those of
  # what is deployed. PGO=0: the same profile without the profile-guided steps.
  if [[ "${PROFILE:-dist}" == dist ]]; then
    say "scripts/build-dist.sh (PGO=${PGO:-1}, CARGO_TARGET_DIR=$CARGO_TARGET_DIR)"
    (cd "$root" && PGO="${PGO:-1}" scripts/build-dist.sh --quiet)
  else
    say "cargo build --profile $PROFILE (CARGO_TARGET_DIR=$CARGO_TARGET_DIR)"
    (cd "$root" && cargo build --profile "$PROFILE" --quiet --bin ai-gateway)
  fi
  GATEWAY_BIN="$CARGO_TARGET_DIR/${PROFILE:-dist}/ai-gateway"
fi
[[ -x "$GATEWAY_BIN" ]] || { echo "no gateway binary at $GATEWAY_BIN" >&2; exit 1; }
# What the binary was built from (right after the build: others may commit during the run).
git_rev="$(cd "$root" && git rev-parse --short HEAD 2>/dev/null || echo '?')"
dirty="$(cd "$root" && git status --porcelain -- src Cargo.toml Cargo.lock 2>/dev/null | wc -l)"
[[ "$dirty" != 0 ]] && git_rev="$git_rev + $dirty uncommitted file(s) in src/Cargo"
if [[ "$built" == 1 ]]; then
  git_rev="$git_rev, ${PROFILE:-dist} profile$([[ "${PROFILE:-dist}" == dist && "${PGO:-1}" != 0 ]] && echo ', profile-guided')"
else
  # GATEWAY_REV: what the prebuilt binary was built from, when the caller knows it.
  git_rev="${GATEWAY_REV:-unknown: prebuilt GATEWAY_BIN of $(date -u -r "$GATEWAY_BIN" '+%Y-%m-%d %H:%M UTC'); the work tree is at $git_rev}"
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
loadavg_start="$(cut -d' ' -f1-3 /proc/loadavg)"; run_start="$(date +%s)"

# ---------------------------------------------------------------- gateway configuration
# gateway_config FILE [OVERLAY_JSON]: the bench configuration, deep-merged with OVERLAY_JSON.
# JSON (valid YAML too). Base = the bare proxy path: one `openai` provider at the mock, model
# gpt-4o-mini with one deployment on it, no auth section, cache off; plus, at the same mock, an
# `anthropic` provider serving model claude-bench, a `gemini` provider serving gemini-bench and a
# `bedrock` provider (dummy static credentials: the mock does not check the signature) serving
# bedrock-bench (the translated scenarios). Lists in the overlay replace the base's.
gateway_config() {
  local file="$1" overlay="${2:-{\}}"
  mkdir -p "$(dirname "$file")/data"
  python3 - "$file" "$overlay" <<PY
import json, sys
base = {
  "server": {"listen": "127.0.0.1:$GW_PORT"},
  "state": {"data_dir": sys.argv[1].rsplit("/", 1)[0] + "/data"},
  "providers": [{"name": "upstream", "type": "openai", "base_url": "http://127.0.0.1:$MOCK_PORT/v1",
                 "api_key": "sk-upstream-fake"},
                {"name": "upstream-anthropic", "type": "anthropic", "base_url": "http://127.0.0.1:$MOCK_PORT",
                 "api_key": "sk-ant-upstream-fake"},
                {"name": "upstream-gemini", "type": "gemini", "base_url": "http://127.0.0.1:$MOCK_PORT",
                 "api_key": "gemini-upstream-fake"},
                {"name": "upstream-bedrock", "type": "bedrock", "base_url": "http://127.0.0.1:$MOCK_PORT",
                 "region": "us-east-1", "aws_access_key_id": "AKIDBENCHFAKE",
                 "aws_secret_access_key": "bench-fake-secret-access-key"}],
  "models": [{"name": "$MODEL", "deployments": [{"provider": "upstream", "model": "$MODEL"}]},
             {"name": "$XMODEL", "deployments": [{"provider": "upstream-anthropic", "model": "claude-3-5-haiku-bench"}]},
             {"name": "$GMODEL", "deployments": [{"provider": "upstream-gemini", "model": "gemini-2.5-flash"}]},
             {"name": "$BMODEL", "deployments": [{"provider": "upstream-bedrock",
                                                  "model": "anthropic.claude-3-5-haiku-20241022-v1:0"}]}],
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
# Overlays. routing_overlay STRATEGY: model gpt-4o-mini over three `openai` providers, all at the
# mock. auth_overlay: one static key with rpm/tpm so high that nothing is refused (checked and
# counted on every request). models_overlay N: N models over 4 providers, 2 deployments each
# (the startup configuration).
# routing_overlay STRATEGY [EXTRA]: the model over 3 deployments; EXTRA (JSON members) added to
# the model (e.g. a hedge).
routing_overlay() {
  local i provs="" deps="" extra="${2:+,$2}"
  for i in 1 2 3; do
    provs+="{\"name\":\"up$i\",\"type\":\"openai\",\"base_url\":\"http://127.0.0.1:$MOCK_PORT/v1\",\"api_key\":\"sk-upstream-fake\"},"
    deps+="{\"provider\":\"up$i\",\"model\":\"$MODEL\"},"
  done
  echo "\"providers\":[${provs%,}],\"models\":[{\"name\":\"$MODEL\",\"routing\":\"$1\",\"deployments\":[${deps%,}]$extra}]"
}
auth_overlay() { echo "\"auth\":{\"keys\":[{\"name\":\"bench\",\"key\":\"$API_KEY\",\"rpm\":1000000000,\"tpm\":1000000000000}]}"; }
models_overlay() {
  python3 - "$1" "$MOCK_PORT" <<'PY'
import json, sys
n, port = int(sys.argv[1]), sys.argv[2]
strategies = ["priority", "weighted", "latency", "cost", "least-busy"]
provs = [{"name": f"p{i}", "type": "openai", "base_url": f"http://127.0.0.1:{port}/v1", "api_key": "sk-fake"}
         for i in range(4)]
models = [{"name": f"model-{m:03d}", "routing": strategies[m % 5],
           "deployments": [{"provider": f"p{(m + d) % 4}", "model": f"upstream-{m:03d}-{d}",
                            "input_cost_per_mtok": 0.15, "output_cost_per_mtok": 0.6} for d in range(2)]}
          for m in range(n)]
print(json.dumps({"providers": provs, "models": models}))
PY
}

# ---------------------------------------------------------------- measuring functions
# measure KIND SCENARIO PATH BODY [HEADER ...] -> rows for the current target
#   EXPECT=text in the environment: what the smoke-test answer must contain
#   KIND wrk (closed-loop HTTP load at $CONCS) or sse (streams at $STREAM_CONCS)
#   the current target is T_LABEL (row label), T_BASE (http://127.0.0.1:port), T_PID, T_HDRS
measure() {
  local kind="$1" scenario="$2" path="$3" body="$4"; shift 4
  local concs="${T_CONCS:-$CONCS}"; [[ "$kind" == sse ]] && concs="${T_STREAM_CONCS:-$STREAM_CONCS}"
  local h args=()
  for h in "${T_HDRS[@]}" "$@"; do args+=(-H "$h"); done
  run_wait "${prio[@]}" taskset -c "$LOAD_CPU" python3 "$here/lib/measure.py" --target "$T_LABEL" \
    --scenario "$scenario" --kind "$kind" --url "$T_BASE$path" --body "$body" --concs "$concs" \
    --duration "$DURATION" --warmup "$WARMUP" --pid "$T_PID" --gw-cpu "$GW_CPU" --load-cpu "$LOAD_CPU" \
    --out "$rows" --expect "${EXPECT:-}" --aux-pid "${T_AUX_PID:-0}" --metrics-url "${T_METRICS:-}" \
    ${T_WRK_ARGS[@]+"${T_WRK_ARGS[@]}"} "${args[@]}"
}
# Scenarios: one function each, over (label, url, body, headers) through `measure`.
scenario_chat()            { measure wrk chat /v1/chat/completions "$CHAT_BODY"; }
scenario_stream()          { measure sse stream /v1/chat/completions "$STREAM_BODY"; }
scenario_embeddings()      { EXPECT='"embedding"' measure wrk embeddings /v1/embeddings "$EMB_BODY"; }
# Responses API (a client of /v1/responses; the mock has no such endpoint, so `direct` skips it):
# compare with the same target's `chat` row (target: at most 1.3x its CPU per request).
scenario_responses()        { EXPECT='"output"' measure wrk responses /v1/responses "$RESP_BODY"; }
scenario_responses_stored() { EXPECT='"output"' measure wrk responses-stored /v1/responses "$RESP_STORED_BODY"; }
# Anthropic client -> gateway /v1/messages -> OpenAI upstream, translated stream.
# `direct` serves /v1/messages from the mock itself (its own translation), so "added" compares
# against that.
scenario_messages_stream() { measure sse messages-stream /v1/messages "$MSG_STREAM_BODY" 'anthropic-version: 2023-06-01'; }
# OpenAI client -> gateway /v1/chat/completions -> `anthropic` provider (the mock's /v1/messages),
# the Anthropic events translated to OpenAI chunks. `direct` does not run it: its baseline is
# direct's `stream` (the same OpenAI stream straight from the mock).
scenario_stream_via_anthropic() { measure sse stream-via-anthropic /v1/chat/completions "$XLATE_STREAM_BODY"; }
# OpenAI client -> gateway /v1/chat/completions -> `gemini` / `bedrock` provider (the mock's
# Gemini API: JSON, SSE; its Converse API: JSON, AWS event-stream frames), translated both ways.
# Compare with the same target's `chat` / `stream` (target: at most 1.3x their CPU per request);
# `direct` does not run them (their baselines are its `chat` and `stream`).
scenario_chat_gemini()    { measure wrk chat-gemini /v1/chat/completions "$GEMINI_CHAT_BODY"; }
scenario_stream_gemini()  { measure sse stream-gemini /v1/chat/completions "$GEMINI_STREAM_BODY"; }
scenario_chat_bedrock()   { measure wrk chat-bedrock /v1/chat/completions "$BEDROCK_CHAT_BODY"; }
scenario_stream_bedrock() { measure sse stream-bedrock /v1/chat/completions "$BEDROCK_STREAM_BODY"; }

# bench_target LABEL BASE PID [HEADER ...]: idle RSS, then every scenario. A target narrows what
# it runs with (dynamically scoped) locals: T_SCENARIOS (default $SCENARIOS), T_CONCS /
# T_STREAM_CONCS, T_AUX_PID (Redis: its CPU is recorded too), T_ACTION (a function run instead of
# the scenarios), T_AFTER (a function run after them).
bench_target() {
  T_LABEL="$1"; T_BASE="$2"; T_PID="$3"; shift 3; T_HDRS=("$@")
  python3 -c 'import json,sys; print(json.dumps({"target":sys.argv[1],"scenario":"idle","kind":"idle","rss_mib":float(sys.argv[2])}))' \
    "$T_LABEL" "$(rss_of "$T_PID")" >> "$rows"
  if [[ -n "${T_ACTION:-}" ]]; then "$T_ACTION"; return 0; fi
  local s
  for s in ${T_SCENARIOS:-$SCENARIOS}; do
    declare -F "scenario_${s//-/_}" >/dev/null || { note "unknown scenario $s"; continue; }
    "scenario_${s//-/_}"
  done
  if [[ -n "${T_AFTER:-}" ]]; then "$T_AFTER"; fi
}
hdr_args() { HDR_ARGS=(); local h; for h in "${T_HDRS[@]}"; do HDR_ARGS+=(-H "$h"); done; }
# Redis commands per request (INFO commandstats around $REDIS_CALLS_N sequential chat requests;
# with T_CALLS_FORMAT, distinct ones).
count_redis_calls() {
  hdr_args
  local fmt=(); [[ -n "${T_CALLS_FORMAT:-}" ]] && fmt=(--format "$T_CALLS_FORMAT")
  local ports=() p; for p in ${T_REDIS_PORTS:-$REDIS_PORT}; do ports+=(--redis-port "$p"); done
  run_wait "${prio[@]}" taskset -c "$LOAD_CPU" python3 "$here/lib/redis_calls.py" --url "$T_BASE/v1/chat/completions" \
    --body "$CHAT_BODY" "${ports[@]}" --n "$REDIS_CALLS_N" --target "$T_LABEL" --out "$rows" \
    ${fmt[@]+"${fmt[@]}"} ${HDR_ARGS[@]+"${HDR_ARGS[@]}"}
}
# fill_cache [N]: N (default $FILL_N) distinct requests through the cache, RSS before / after
# (lib/cache_fill.py).
fill_cache() {
  local n="${1:-$FILL_N}"
  hdr_args
  say "$T_LABEL: $n distinct requests through the cache"
  run_wait "${prio[@]}" taskset -c "$LOAD_CPU" python3 "$here/lib/cache_fill.py" --url "$T_BASE/v1/chat/completions" \
    --pid "$T_PID" --n "$n" --conc 64 --format "$CHAT_FMT" --metrics-url "$T_BASE/metrics" --target "$T_LABEL" \
    --out "$rows" ${HDR_ARGS[@]+"${HDR_ARGS[@]}"}
}
# L2 hits: fill $L2_KEYS distinct answers (stored in Redis), then cycle over them (`chat` rows at
# $CACHE_CONCS, lib/fill.lua), then count Redis commands per request over distinct ones.
bench_l2() {
  fill_cache "$L2_KEYS"
  local T_WRK_ARGS=(--wrk-script fill.lua --wrk-env "FILL_N=$L2_KEYS" --wrk-env FILL_STOP=0 --wrk-env "FILL_FORMAT=$CHAT_FMT")
  measure wrk chat /v1/chat/completions "${CHAT_FMT/\%d/0}"
  local T_CALLS_FORMAT="$CHAT_FMT"
  count_redis_calls
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
  local T_METRICS="http://127.0.0.1:$GW_PORT/metrics"
  bench_target "$label" "http://127.0.0.1:$GW_PORT" "$pid" "${auth[@]}" "$@"
  stop_pid "$pid"
}
# ensure_redis LABEL: a redis-server of our own (pinned to $LOAD_CPU, no persistence) on
# $REDIS_PORT, started once and emptied for each target; 1 (and a note) if there is none.
redis_pid=""
ensure_redis() {
  if [[ -n "$redis_pid" ]]; then redis-cli -h 127.0.0.1 -p "$REDIS_PORT" flushall >/dev/null; return 0; fi
  if ! command -v redis-server >/dev/null; then
    say "installing redis-server"; apt_install redis-server redis-tools || true
  fi
  command -v redis-server >/dev/null && command -v redis-cli >/dev/null \
    || { note "redis-server not available: $1 skipped"; return 1; }
  [[ "$REDIS_PORT" != 0 ]] || REDIS_PORT="$(free_port)"
  if port_busy "$REDIS_PORT"; then note "127.0.0.1:$REDIS_PORT is taken: $1 skipped"; return 1; fi
  say "redis-server on 127.0.0.1:$REDIS_PORT (CPU $LOAD_CPU)"
  mkdir -p "$tmp/redis"
  start_bg redis "$LOAD_CPU" redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no \
    --dir "$tmp/redis" --protected-mode yes
  redis_pid="$BG_PID"
  local i
  for i in $(seq 100); do
    redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null | grep -q PONG && return 0
    sleep 0.05
  done
  note "redis-server did not start: $(tail -c 300 "$out/redis.log" | tr '\n' ' ')"; stop_pid "$redis_pid"; redis_pid=""
  return 1
}
redis_overlay() { echo "\"state\":{\"redis_url\":\"redis://127.0.0.1:$REDIS_PORT\"}"; }
# ensure_redis_cluster LABEL: three redis-servers of our own (cluster mode, pinned to $LOAD_CPU,
# no persistence) joined by `redis-cli --cluster create`, started once and emptied for each
# target; their ports in $CLUSTER_PORTS. 1 (and a note) if there is none.
cluster_pids=(); CLUSTER_PORTS=""
ensure_redis_cluster() {
  if [[ -n "$CLUSTER_PORTS" ]]; then
    local p; for p in $CLUSTER_PORTS; do redis-cli -h 127.0.0.1 -p "$p" flushall >/dev/null 2>&1 || true; done; return 0
  fi
  command -v redis-server >/dev/null && command -v redis-cli >/dev/null \
    || { note "redis-server not available: $1 skipped"; return 1; }
  local i port bus addrs=()
  for i in 0 1 2; do
    port="$(free_port)"; bus="$(free_port)"; mkdir -p "$tmp/redis-cluster/$i"
    start_bg "redis-cluster-$i" "$LOAD_CPU" redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no \
      --dir "$tmp/redis-cluster/$i" --cluster-enabled yes --cluster-config-file nodes.conf --cluster-port "$bus"
    cluster_pids+=("$BG_PID"); CLUSTER_PORTS+="$port "; addrs+=("127.0.0.1:$port")
  done
  for port in $CLUSTER_PORTS; do
    for i in $(seq 50); do redis-cli -p "$port" ping 2>/dev/null | grep -q PONG && break; sleep 0.1; done
  done
  say "redis cluster of 3 primaries on ${addrs[*]} (CPU $LOAD_CPU)"
  if ! redis-cli --cluster create "${addrs[@]}" --cluster-yes >"$out/redis-cluster-create.log" 2>&1; then
    note "redis-cli --cluster create failed: $1 skipped"; return 1
  fi
  for i in $(seq 100); do
    redis-cli -p "${CLUSTER_PORTS%% *}" cluster info 2>/dev/null | grep -q cluster_state:ok && return 0; sleep 0.1
  done
  note "the redis cluster did not become ok: $1 skipped"; return 1
}
redis_cluster_overlay() {
  local p urls=(); for p in $CLUSTER_PORTS; do urls+=("\"redis://127.0.0.1:$p\""); done
  echo "\"state\":{\"redis_cluster_urls\":[$(IFS=,; echo "${urls[*]}")]}"
}
target_direct()  {
  say "direct: the mock itself"
  local T_SCENARIOS="" s
  for s in $SCENARIOS; do
    [[ "$s" == stream-via-anthropic || "$s" == responses* || "$s" == *-gemini || "$s" == *-bedrock ]] || T_SCENARIOS+="$s "
  done
  bench_target direct "http://127.0.0.1:$MOCK_PORT" "$mock_pid" "${auth[@]}"
}
target_gateway() { run_gateway gateway '{}'; }
# The request log and usage report are on by default (request_log.enabled); these rows turn them
# off, to compare with gateway and gateway-auth (target: the "on" rows within 3 % of these).
target_gateway_no_request_log() { run_gateway gateway-no-request-log '{"request_log":{"enabled":false}}'; }
target_gateway_auth_no_request_log() { local T_SCENARIOS="chat" T_CONCS="$AUTH_CONCS"; run_gateway gateway-auth-no-request-log "{$(auth_overlay), \"request_log\":{\"enabled\":false}}"; }
# Routing: gateway-full = auth (local limits) + model over 3 deployments (least-busy) + metrics
# (always on): the configuration of the ">= 0.7x nginx" target. gateway-route-*: the same model
# without auth, one row per strategy. Non-streaming, at $ROUTE_CONCS.
target_gateway_full() {
  local T_SCENARIOS="chat" T_CONCS="$ROUTE_CONCS"
  run_gateway gateway-full "{$(routing_overlay least-busy), $(auth_overlay)}"
}
# gateway-full with hedging configured but never triggered and the request log on (the default):
# the configuration of issue 28's ">= 0.85x nginx" target.
target_gateway_full_hedge() {
  local T_SCENARIOS="chat" T_CONCS="$ROUTE_CONCS"
  run_gateway gateway-full-hedge "{$(routing_overlay least-busy '"hedge":{"after":"10s"}'), $(auth_overlay)}"
}
target_gateway_route_least_busy() { local T_SCENARIOS="chat" T_CONCS="$ROUTE_CONCS"; run_gateway gateway-route-least-busy "{$(routing_overlay least-busy)}"; }
# Hedging configured but never triggered (`after: 10s`; the mock answers in well under a
# millisecond): to compare with gateway-route-least-busy (target: within 2 %).
target_gateway_route_hedge() { local T_SCENARIOS="chat" T_CONCS="$ROUTE_CONCS"; run_gateway gateway-route-hedge "{$(routing_overlay least-busy '"hedge":{"after":"10s"}')}"; }
target_gateway_route_latency()    { local T_SCENARIOS="chat" T_CONCS="$ROUTE_CONCS"; run_gateway gateway-route-latency "{$(routing_overlay latency)}"; }
# Auth: a static key (checked on every request) with rpm/tpm limits nothing reaches; limits
# counted in process (gateway-auth) or in Redis with one script per check (gateway-auth-shared,
# followed by the Redis commands per request).
target_gateway_auth() { local T_SCENARIOS="chat" T_CONCS="$AUTH_CONCS"; run_gateway gateway-auth "{$(auth_overlay)}"; }
target_gateway_auth_shared() {
  ensure_redis gateway-auth-shared || return 0
  local T_SCENARIOS="chat" T_CONCS="$AUTH_CONCS" T_AUX_PID="$redis_pid" T_AFTER=count_redis_calls
  run_gateway gateway-auth-shared "{$(auth_overlay), $(redis_overlay), \"rate_limits\":{\"shared\":true}}"
}
# The same on a Redis Cluster of 3 primaries (on the load generator's core, as the one Redis):
# the limits' keys share one hash tag, so the Redis commands per request and the throughput are
# to be the same as gateway-auth-shared's (docs/scale-out.md).
target_gateway_auth_shared_cluster() {
  ensure_redis_cluster gateway-auth-shared-cluster || return 0
  local T_SCENARIOS="chat" T_CONCS="$AUTH_CONCS" T_AUX_PID="${cluster_pids[0]}" T_AFTER=count_redis_calls
  local T_REDIS_PORTS="$CLUSTER_PORTS"
  run_gateway gateway-auth-shared-cluster "{$(auth_overlay), $(redis_cluster_overlay), \"rate_limits\":{\"shared\":true}}"
}
# A second mock pinned to the gateway's CPU: the upstream served directly from the core the
# gateway runs on (wrk on the other core, as for the gateway), the fair baseline for cache hits;
# `direct` shares the load generator's core, so it never pays a cross-core wake-up.
target_mock_on_gw_cpu() {
  local port; port="$(free_port)"
  say "mock-on-gw-cpu: a second mock on 127.0.0.1:$port (CPU $GW_CPU)"
  start_bg mock-on-gw-cpu "$GW_CPU" "$GATEWAY_BIN" mock-server --listen "127.0.0.1:$port"
  local pid="$BG_PID"
  if ! wait_http "http://127.0.0.1:$port/health" 10; then
    note "mock-on-gw-cpu did not start: $(tail -c 300 "$out/mock-on-gw-cpu.log" | tr '\n' ' ')"; failed=1
    stop_pid "$pid"; return 0
  fi
  local T_SCENARIOS="chat" T_CONCS="$CACHE_CONCS"
  bench_target mock-on-gw-cpu "http://127.0.0.1:$port" "$pid" "${auth[@]}"
  stop_pid "$pid"
}
# Cache on, L1 only: after the first request every identical request is an L1 hit.
target_gateway_cache() { local T_SCENARIOS="chat" T_CONCS="$CACHE_CONCS"; run_gateway gateway-cache '{"cache": {"enabled": true}}'; }
# L2 hits only: Redis as L2 and an L1 that cannot keep an answer (l1_max_bytes: 1: every entry
# weighs more than the whole L1, so L1 drops it at its next maintenance; until then it can still
# answer, which is why one repeated request is not enough). $L2_KEYS distinct requests are stored
# first, then cycled over: a request comes back only after $L2_KEYS - 1 others, long after L1
# dropped it, so it misses L1 and hits L2. Each row records the cache counters of /metrics
# (which layer answered), and Redis's CPU.
target_gateway_cache_l2() {
  ensure_redis gateway-cache-l2 || return 0
  local T_ACTION=bench_l2 T_CONCS="$CACHE_CONCS" T_AUX_PID="$redis_pid"
  run_gateway gateway-cache-l2 "{$(redis_overlay), \"cache\":{\"enabled\":true,\"l1_max_bytes\":1}}"
}
# RSS with $FILL_N answers in L1 (room for 2x that many entries, the default 256 MiB).
target_gateway_cache_100k() {
  local T_ACTION=fill_cache
  run_gateway gateway-cache-100k "{\"cache\":{\"enabled\":true,\"l1_max_entries\":$((FILL_N * 2))}}"
}
# $SLOW_N slow streams held open at once (lib/slow_streams.py). `gateway-slow-streams`: through
# a second mock with --latency $SLOW_LATENCY (each stream also holds an upstream connection, so
# the gateway needs 2 descriptors per stream: with a lower limit, fewer streams, said in the
# row); `gateway-slow-streams-h2c`: the same mock reached over HTTP/2 without TLS (`http2: true`);
# `gateway-slow-streams-local`: the gateway's own mock provider with that latency.
slow_streams() {
  hdr_args
  local n="$SLOW_N" fds; fds="$(ulimit -Hn)"
  if [[ "${T_FDS_PER_STREAM:-1}" == 2 && "$fds" != unlimited ]] && (( 2 * n + 1000 > fds )); then
    n=$(( (fds - 1000) / 2 )); note "$T_LABEL: $n streams, not $SLOW_N: the descriptor limit here is $fds (2 per stream)"
  fi
  say "$T_LABEL: $n slow streams held open"
  run_wait "${prio[@]}" taskset -c "$LOAD_CPU" python3 "$here/lib/slow_streams.py" --port "$GW_PORT" \
    --pid "$T_PID" --n "$n" --body "$STREAM_BODY" --target "$T_LABEL" --out "$rows" ${HDR_ARGS[@]+"${HDR_ARGS[@]}"}
}
# $1: the target's label; $2: "true" to reach the mock over HTTP/2 without TLS (h2c: the
# streams share a few upstream connections, one descriptor per stream in the gateway).
slow_streams_through() {
  local port; port="$(free_port)"
  start_bg slow-mock "$LOAD_CPU" "$GATEWAY_BIN" mock-server --listen "127.0.0.1:$port" --latency "$SLOW_LATENCY"
  local mpid="$BG_PID"
  if ! wait_http "http://127.0.0.1:$port/health" 10; then
    note "slow mock did not start: $(tail -c 300 "$out/slow-mock.log" | tr '\n' ' ')"; failed=1
    stop_pid "$mpid"; return 0
  fi
  local T_ACTION=slow_streams T_FDS_PER_STREAM=2
  [[ "$2" == true ]] && T_FDS_PER_STREAM=1
  run_gateway "$1" "{\"providers\":[{\"name\":\"upstream\",\"type\":\"openai\",\"base_url\":\"http://127.0.0.1:$port/v1\",\"api_key\":\"sk-upstream-fake\",\"http2\":$2}],\"models\":[{\"name\":\"$MODEL\",\"deployments\":[{\"provider\":\"upstream\",\"model\":\"$MODEL\"}]}]}"
  stop_pid "$mpid"
}
target_gateway_slow_streams() { slow_streams_through gateway-slow-streams false; }
target_gateway_slow_streams_h2c() { slow_streams_through gateway-slow-streams-h2c true; }
target_gateway_slow_streams_local() {
  local T_ACTION=slow_streams
  run_gateway gateway-slow-streams-local "{\"providers\":[{\"name\":\"upstream\",\"type\":\"mock\",\"latency\":\"$SLOW_LATENCY\"}],\"models\":[{\"name\":\"$MODEL\",\"deployments\":[{\"provider\":\"upstream\",\"model\":\"$MODEL\"}]}]}"
}
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
  local T_SCENARIOS="$NGINX_SCENARIOS"
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
  if [[ "$STARTUP_MODELS" -gt 0 ]]; then
    say "gateway startup to ready with $STARTUP_MODELS models, $STARTUP_RUNS starts"
    mkdir -p "$tmp/startup-models"
    gateway_config "$tmp/startup-models/gateway.json" "$(models_overlay "$STARTUP_MODELS")"
    gateway_cmd "$tmp/startup-models/gateway.json"
    run_wait "${prio[@]}" taskset -c "$LOAD_CPU" python3 "$here/lib/startup.py" --runs "$STARTUP_RUNS" \
      --port "$GW_PORT" --gw-cpu "$GW_CPU" --cwd "$tmp/startup-models" --log "$out/gateway-startup-models.log" \
      --scenario "startup-$STARTUP_MODELS-models" --models "$STARTUP_MODELS" --out "$rows" -- "${GW_CMD[@]}"
  fi
fi
for round in $(seq "$REPEAT"); do
  [[ "$REPEAT" -gt 1 ]] && say "round $round of $REPEAT"
  for t in $TARGETS; do
    if declare -F "target_${t//-/_}" >/dev/null; then "target_${t//-/_}"; else note "unknown target $t"; fi
  done
done

# ---------------------------------------------------------------- 5. hot paths (criterion)
# Built at the normal priority (like the gateway), then the bench executable itself is run
# pinned to $GW_CPU at $NICE; its figures become rows (scenario hot-path).
if [[ "$HOT_PATHS" == 1 ]]; then
  say "hot paths: cargo bench --bench hot_paths -- --warm-up-time 1 --measurement-time 2"
  export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/ai-gateway/target}"
  if [[ -n "${HOT_PATHS_BIN:-}" ]]; then hp_exe="$HOT_PATHS_BIN"; say "(prebuilt: $hp_exe)"; fi
  if [[ -n "${HOT_PATHS_BIN:-}" && -x "$hp_exe" ]] || hp_exe="$(cd "$root" && cargo bench --bench hot_paths --no-run --message-format=json 2>"$out/hot_paths-build.log" \
      | python3 -c 'import json,sys
for l in sys.stdin:
    try: m = json.loads(l)
    except ValueError: continue
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] == "hot_paths": print(m["executable"])' | tail -1)" \
      && [[ -n "$hp_exe" ]]; then
    run_wait "${prio[@]}" taskset -c "$GW_CPU" "$hp_exe" --bench --warm-up-time 1 --measurement-time 2 >"$out/hot_paths.log" 2>&1 </dev/null
    python3 "$here/lib/criterion_rows.py" "$out/hot_paths.log" >> "$rows"
  else
    note "cargo bench --bench hot_paths did not build (someone editing src/?): $(tail -c 300 "$out/hot_paths-build.log" | tr '\n' ' ')"
  fi
fi

# ---------------------------------------------------------------- 6. report
notes_json="$(python3 -c 'import json,sys; print(json.dumps(sys.argv[1:]))' ${notes[@]+"${notes[@]}"})"
META_OUT="$out/meta.json" CMDLINE="$cmdline" GIT_REV="$git_rev" LOADAVG_START="$loadavg_start" \
GATEWAY_BIN="$GATEWAY_BIN" NGINX_BIN="$NGINX_BIN" TARGETS="$TARGETS" NOTES="$notes_json" \
GW_CPU="$GW_CPU" LOAD_CPU="$LOAD_CPU" DURATION="$DURATION" WARMUP="$WARMUP" GW_LOG_LEVEL="$GW_LOG_LEVEL" NICE="$NICE" REPEAT="$REPEAT" \
REDIS_VERSION="$( (redis-server --version 2>/dev/null || true) | cut -d' ' -f1-3)" RUN_START="$run_start" \
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
    "redis": e.get("REDIS_VERSION") or None, "wall_s": round(__import__("time").time() - float(e["RUN_START"])),
    "repeat": int(e["REPEAT"]),
}
with open(e["META_OUT"], "w") as f:
    json.dump(meta, f, indent=1)
PY
python3 "$here/lib/report.py" "$out" > "$out/report.md"
cp "$out/report.md" "$here/results/latest.md"
cat "$out/report.md"
say "results in ${out#$root/}/ (report.md, rows.jsonl, meta.json, logs)"
exit "$failed"
