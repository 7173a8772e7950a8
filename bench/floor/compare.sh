#!/usr/bin/env bash
# Requests per CPU-second at c=64 of nginx `proxy_pass`, the hyper floor (src/main.rs, `proxy`)
# and the gateway in issue 28's configuration (a key with rpm+tpm, 3 deployments least-busy, a
# hedge after 10 s, request log on), each pinned to CPU 0 in turn, the mock and wrk on CPU 1;
# ROUNDS interleaved rounds of SECS seconds after 2 s of warm-up.
#   GATEWAY_BIN=path [ROUNDS=3] [SECS=8] bench/floor/compare.sh
# Needs: wrk, nginx, `cargo build --release --manifest-path bench/floor/Cargo.toml` (FLOOR_BIN).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"; root="$(cd "$here/../.." && pwd)"
GATEWAY_BIN="${GATEWAY_BIN:?the gateway binary}"; ROUNDS="${ROUNDS:-3}"; SECS="${SECS:-8}"
FLOOR_BIN="${FLOOR_BIN:-${CARGO_TARGET_DIR:-$here/target}/release/hyper-floor}"
MOCK_PORT=18180 PORT=18181 KEY=sk-bench-fake MODEL=gpt-4o-mini
tmp="$(mktemp -d)"; pids=()
cleanup() { for p in "${pids[@]}"; do kill -- "-$p" 2>/dev/null || kill "$p" 2>/dev/null || true; done; rm -rf "$tmp"; }
trap cleanup EXIT
sed "s/__PORT__/$PORT/; s/__UPSTREAM__/$MOCK_PORT/" "$root/bench/limit/nginx-proxy.conf" > "$tmp/nginx.conf"
python3 - "$tmp" <<PY
import json, sys
d = sys.argv[1]
provs = [{"name": f"up{i}", "type": "openai", "base_url": "http://127.0.0.1:$MOCK_PORT/v1", "api_key": "sk-upstream-fake"} for i in (1, 2, 3)]
json.dump({"server": {"listen": "127.0.0.1:$PORT"}, "state": {"data_dir": d + "/data"}, "providers": provs,
           "models": [{"name": "$MODEL", "routing": "least-busy", "hedge": {"after": "10s"},
                       "deployments": [{"provider": p["name"], "model": "$MODEL"} for p in provs]}],
           "auth": {"keys": [{"name": "bench", "key": "$KEY", "rpm": 1000000000, "tpm": 1000000000000}]},
           "cache": {"enabled": False}, "telemetry": {"log_level": "warn"}}, open(d + "/gateway.json", "w"))
PY
export BENCH_BODY="{\"model\":\"$MODEL\",\"messages\":[{\"role\":\"system\",\"content\":\"You are a helpful assistant.\"},{\"role\":\"user\",\"content\":\"Please write one short friendly sentence that greets the reader and wishes them a very pleasant productive day\"}],\"max_tokens\":64}"
setsid taskset -c 1 "$GATEWAY_BIN" mock-server --listen "127.0.0.1:$MOCK_PORT" >"$tmp/mock.log" 2>&1 & pids+=($!)
# CPU ticks (user + system) of a process group.
ticks() { local t=0 p s; for p in $(pgrep -g "$1"); do s=$(awk '{print $14+$15}' "/proc/$p/stat" 2>/dev/null || echo 0); t=$((t + s)); done; echo "$t"; }
declare -A cmd=(
  [nginx]="$(command -v nginx || echo /usr/sbin/nginx) -p $tmp/ -c nginx.conf -e stderr -g 'daemon off;'"
  [hyper-floor]="$FLOOR_BIN $PORT proxy $MOCK_PORT"
  [gateway]="$GATEWAY_BIN --config $tmp/gateway.json serve"
)
mkdir -p "$tmp/logs" "$tmp/data"
for r in $(seq "$ROUNDS"); do
  declare -A got=()
  for t in nginx hyper-floor gateway; do
    (cd "$tmp" && exec setsid taskset -c 0 bash -c "exec ${cmd[$t]}") >"$tmp/logs/$t.log" 2>&1 & p=$!; pids+=("$p")
    for _ in $(seq 50); do curl -s -o /dev/null -m 1 "http://127.0.0.1:$PORT/" && break; sleep 0.2; done
    taskset -c 1 wrk -t1 -c64 -d2s -s "$root/bench/lib/post.lua" -H "Authorization: Bearer $KEY" "http://127.0.0.1:$PORT/v1/chat/completions" >/dev/null
    t0=$(ticks "$p")
    out="$(taskset -c 1 wrk -t1 -c64 -d"${SECS}s" -s "$root/bench/lib/post.lua" -H "Authorization: Bearer $KEY" "http://127.0.0.1:$PORT/v1/chat/completions")"
    t1=$(ticks "$p")
    kill -- "-$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; sleep 0.3
    n=$(sed -n 's/^WRK_JSON .*"requests":\([0-9]*\).*/\1/p' <<<"$out")
    bad=$(sed -n 's/^WRK_JSON .*"err_status":\([0-9]*\).*/\1/p' <<<"$out")
    got[$t]=$(( n * 100 / (t1 - t0 > 0 ? t1 - t0 : 1) ))
    echo "round $r $t: $n requests ($bad errors), ${got[$t]} req per CPU-second"
  done
  echo "round $r ratios to nginx: hyper-floor $(python3 -c "print(f'{${got[hyper-floor]}/${got[nginx]}:.2f}')"), gateway $(python3 -c "print(f'{${got[gateway]}/${got[nginx]}:.2f}')")"
done
