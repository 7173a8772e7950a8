#!/usr/bin/env bash
# The training run of a profile-guided build (scripts/build-dist.sh): BIN, built with
# `-Cprofile-generate`, serves every common kind of request for a few seconds each, through its
# own mock upstream on loopback, and writes its profile when it stops.
#   scripts/pgo-train.sh BIN
# What it serves: OpenAI chat completions plain and streamed (a key with rpm/tpm limits, three
# deployments, hedging configured), the same through the `anthropic`, `gemini` and `bedrock`
# providers, Anthropic's /v1/messages, /v1/responses, /v1/embeddings, the built-in `mock` model,
# a few refused requests (no key, a bad body, an unknown model); then, on a second gateway, cache
# hits and a model behind a `pii` guardrail that masks. Needs `wrk` and `curl`.
# SECONDS_EACH (default 3) and CONC (default 16) set each load; MOCK_PORT/GW_PORT the ports.
set -euo pipefail
bin="$(realpath "$1")"
here="$(cd "$(dirname "$0")" && pwd)"
each="${SECONDS_EACH:-3}" conc="${CONC:-16}"
mock_port="${MOCK_PORT:-18180}" gw_port="${GW_PORT:-18181}"
for t in wrk curl; do
  command -v "$t" >/dev/null || { echo "pgo-train: $t is needed (apt-get install $t)" >&2; exit 1; }
done
tmp="$(mktemp -d -t ai-gateway-pgo.XXXXXX)"
pids=()
cleanup() {
  local p
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT

up="http://127.0.0.1:$mock_port"
key="sk-pgo-train"
mkdir -p "$tmp/data"
common="\"server\": {\"listen\": \"127.0.0.1:$gw_port\"}, \"state\": {\"data_dir\": \"$tmp/data\"},
 \"providers\": [
  {\"name\": \"up1\", \"type\": \"openai\", \"base_url\": \"$up/v1\", \"api_key\": \"sk-upstream\"},
  {\"name\": \"up2\", \"type\": \"openai\", \"base_url\": \"$up/v1\", \"api_key\": \"sk-upstream\"},
  {\"name\": \"up3\", \"type\": \"openai\", \"base_url\": \"$up/v1\", \"api_key\": \"sk-upstream\"},
  {\"name\": \"ant\", \"type\": \"anthropic\", \"base_url\": \"$up\", \"api_key\": \"sk-ant-upstream\"},
  {\"name\": \"gem\", \"type\": \"gemini\", \"base_url\": \"$up\", \"api_key\": \"gemini-upstream\"},
  {\"name\": \"bed\", \"type\": \"bedrock\", \"base_url\": \"$up\", \"region\": \"us-east-1\",
   \"aws_access_key_id\": \"AKIDPGOTRAIN\", \"aws_secret_access_key\": \"pgo-train-secret\"},
  {\"name\": \"local\", \"type\": \"mock\"}],
 \"auth\": {\"keys\": [{\"name\": \"train\", \"key\": \"$key\", \"rpm\": 1000000000, \"tpm\": 1000000000000}]},
 \"telemetry\": {\"log_level\": \"warn\", \"log_format\": \"json\"}"
# 1: the proxy paths, cache off.
cat >"$tmp/serve.json" <<JSON
{$common,
 "models": [
  {"name": "gpt-4o-mini", "routing": "least-busy", "hedge": {"after": "10s"},
   "deployments": [{"provider": "up1", "model": "gpt-4o-mini", "input_cost_per_mtok": 0.15, "output_cost_per_mtok": 0.6},
                   {"provider": "up2", "model": "gpt-4o-mini"}, {"provider": "up3", "model": "gpt-4o-mini"}]},
  {"name": "claude-train", "deployments": [{"provider": "ant", "model": "claude-3-5-haiku-train"}]},
  {"name": "gemini-train", "deployments": [{"provider": "gem", "model": "gemini-2.5-flash"}]},
  {"name": "bedrock-train", "deployments": [{"provider": "bed", "model": "anthropic.claude-3-5-haiku-20241022-v1:0"}]},
  {"name": "mock", "deployments": [{"provider": "local", "model": "mock"}]}],
 "cache": {"enabled": false}}
JSON
# 2: cache hits (deterministic requests only) and a guardrail that masks.
cat >"$tmp/features.json" <<JSON
{$common,
 "models": [
  {"name": "gpt-4o-mini", "deployments": [{"provider": "up1", "model": "gpt-4o-mini"}]},
  {"name": "guarded", "guardrails": ["pii"], "deployments": [{"provider": "up1", "model": "gpt-4o-mini"}]}],
 "guardrails": [{"name": "pii", "type": "pii", "action": "mask", "apply_to": ["input", "output"], "models": []}],
 "cache": {"enabled": true, "only_deterministic": true}}
JSON

"$bin" mock-server --listen "127.0.0.1:$mock_port" >"$tmp/mock.log" 2>&1 &
mock=$!
pids+=("$mock")
gw=""
# start CONFIG: the gateway on it, once /health answers.
start() {
  (cd "$tmp" && exec "$bin" --config "$1" serve) >"$tmp/gateway.log" 2>&1 &
  gw=$!
  pids+=("$gw")
  local _
  for _ in $(seq 100); do
    curl -fs -m 2 -o /dev/null "http://127.0.0.1:$gw_port/health" && return 0
    kill -0 "$gw" 2>/dev/null || break
    sleep 0.1
  done
  echo "pgo-train: the gateway did not start:" >&2
  tail -c 600 "$tmp/gateway.log" >&2
  exit 1
}
# stop: a clean stop (the instrumented binary writes its profile at exit).
stop() {
  kill -TERM "$gw"
  wait "$gw" || { echo "pgo-train: the gateway did not stop cleanly" >&2; exit 1; }
  pids=("$mock")
}

. "$here/../bench/lib/prompt.sh"   # SYS, USR: the bench's prompt
chat() { echo "{\"model\":\"$1\",\"messages\":[$SYS,$USR],\"max_tokens\":64$2}"; }
# load PATH BODY [HEADER]: wrk for $each seconds; every answer must be a 2xx.
load() {
  local path="$1" body="$2" out
  local args=(-t1 "-c$conc" "-d${each}s" --timeout 10s -s "$here/../bench/lib/post.lua"
    -H "Authorization: Bearer $key")
  [[ -n "${3:-}" ]] && args+=(-H "$3")
  out="$(BENCH_BODY="$body" wrk "${args[@]}" "http://127.0.0.1:$gw_port$path" 2>&1)"
  if grep -q "Non-2xx\|Socket errors" <<<"$out" || ! grep -q "^Requests/sec:" <<<"$out"; then
    echo "pgo-train: $path failed: $out" >&2
    exit 1
  fi
  echo "pgo-train: $path $(grep -o '^Requests/sec:.*' <<<"$out")"
}

start "$tmp/serve.json"
load /v1/chat/completions "$(chat gpt-4o-mini '')"
load /v1/chat/completions "$(chat gpt-4o-mini ',"stream":true')"
load /v1/chat/completions "$(chat claude-train '')"
load /v1/chat/completions "$(chat claude-train ',"stream":true')"
load /v1/chat/completions "$(chat gemini-train '')"
load /v1/chat/completions "$(chat gemini-train ',"stream":true')"
load /v1/chat/completions "$(chat bedrock-train '')"
load /v1/chat/completions "$(chat bedrock-train ',"stream":true')"
load /v1/chat/completions "$(chat mock '')"
load /v1/messages "{\"model\":\"gpt-4o-mini\",\"max_tokens\":64,\"system\":\"You are a helpful assistant.\",\"messages\":[$USR]}" 'anthropic-version: 2023-06-01'
load /v1/messages "{\"model\":\"claude-train\",\"max_tokens\":64,\"stream\":true,\"messages\":[$USR]}" 'anthropic-version: 2023-06-01'
load /v1/responses "{\"model\":\"gpt-4o-mini\",\"instructions\":\"You are a helpful assistant.\",\"input\":\"Please write one short friendly sentence\",\"max_output_tokens\":64,\"store\":false}"
load /v1/embeddings '{"model":"gpt-4o-mini","input":"The quick brown fox jumps over the lazy dog"}'
# A few refusals: their paths are in the binary too.
for _ in $(seq 50); do
  curl -s -o /dev/null "http://127.0.0.1:$gw_port/v1/chat/completions" -d "$(chat gpt-4o-mini '')"
  curl -s -o /dev/null -H "Authorization: Bearer $key" "http://127.0.0.1:$gw_port/v1/chat/completions" -d '{"model":'
  curl -s -o /dev/null -H "Authorization: Bearer $key" "http://127.0.0.1:$gw_port/v1/chat/completions" -d "$(chat no-such-model '')"
  curl -s -o /dev/null "http://127.0.0.1:$gw_port/metrics"
done
stop

start "$tmp/features.json"
load /v1/chat/completions "$(chat gpt-4o-mini ',"temperature":0')"
load /v1/chat/completions "$(chat gpt-4o-mini ',"temperature":0,"stream":true')"
load /v1/chat/completions "{\"model\":\"guarded\",\"messages\":[$SYS,{\"role\":\"user\",\"content\":\"Write to ada@example.com or call +1 415 555 0100 about the invoice\"}],\"max_tokens\":64}"
stop
echo "pgo-train: done"
