#!/usr/bin/env bash
# Async jobs benchmark, loopback only: submission throughput (202/s), end-to-end job throughput
# with the built-in zero-latency mock provider, and gateway RSS with a deep queue.
#   scripts/bench-jobs.sh embedded|nats [SUBMIT_SECONDS] [QUEUE_DEPTH]
# Needs a release build (cargo build --release), wrk, and for nats mode nats-server.
set -euo pipefail
mode=${1:-embedded}; secs=${2:-10}; depth=${3:-100000}
cd "$(dirname "$0")/.."
BIN=${BIN:-${CARGO_TARGET_DIR:-target}/release/ai-gateway}
NATS=$(command -v nats-server || echo /usr/sbin/nats-server)
work=$(mktemp -d); trap 'kill $(jobs -p) 2>/dev/null; wait 2>/dev/null; rm -rf "$work"' EXIT
port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
gw_port=$(port)
phase=0
fresh_state() { # a new, empty queue for each phase
  phase=$((phase + 1))
  if [ "$mode" = nats ]; then
    [ -n "${nats_pid:-}" ] && { kill "$nats_pid"; wait "$nats_pid" 2>/dev/null || true; }
    np=$(port); "$NATS" -js -a 127.0.0.1 -p "$np" -sd "$work/nats$phase" >/dev/null 2>&1 & nats_pid=$!
    sleep 0.5; state="{\"nats_url\": \"nats://127.0.0.1:$np\"}"
  else
    state="{\"data_dir\": \"$work/data$phase\"}"
  fi
}
start_gw() { # $1 = workers, $2 = mock latency
  fresh_state
  cat > "$work/g.json" <<JSON
{"server": {"listen": "127.0.0.1:$gw_port"}, "state": $state,
 "providers": [{"name": "local", "type": "mock", "latency": "$2"}],
 "models": [{"name": "mock", "deployments": [{"provider": "local", "model": "mock"}]}],
 "cache": {"enabled": false}, "jobs": {"workers": $1},
 "telemetry": {"log_level": "warn", "log_format": "json"}}
JSON
  "$BIN" --config "$work/g.json" >"$work/gw.log" 2>&1 & gw_pid=$!
  for _ in $(seq 100); do curl -sf "127.0.0.1:$gw_port/health" >/dev/null && return; sleep 0.1; done
  echo "gateway did not start"; cat "$work/gw.log"; exit 1
}
stop_gw() { kill "$gw_pid"; wait "$gw_pid" 2>/dev/null || true; }
metric() { curl -s "127.0.0.1:$gw_port/metrics" | awk -v m="$1" 'index($0, m)==1 {s+=$NF} END {print s+0}'; }
rss() { awk '/VmRSS/ {print int($2/1024) " MiB"}' "/proc/$1/status"; }
cat > "$work/post.lua" <<'LUA'
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
counter = 0
request = function()
  counter = counter + 1
  return wrk.format(nil, nil, nil, '{"model":"mock","messages":[{"role":"user","content":"job ' .. counter .. '"}]}')
end
LUA

echo "== $mode: submissions (workers busy on a 10 s upstream, so the queue only grows)"
start_gw 1 10s
wrk -t1 -c64 -d"${secs}s" -s "$work/post.lua" "http://127.0.0.1:$gw_port/v1/async/chat/completions" | grep -E "Requests/sec|Latency|Non-2xx|requests in"
echo "gateway RSS after submissions: $(rss $gw_pid)${nats_pid:+, nats-server RSS $(rss $nats_pid)}"
stop_gw

echo "== $mode: end to end (32 workers, zero-latency mock upstream)"
start_gw 32 0ms
n=20000
t0=$(date +%s.%N)
wrk -t1 -c64 -d60s -s "$work/post.lua" "http://127.0.0.1:$gw_port/v1/async/chat/completions" >/dev/null &
wrk_pid=$!
# Stop submitting after n 202s' worth of time is not known up front: sample the ended counter.
sleep 10; kill $wrk_pid 2>/dev/null; wait $wrk_pid 2>/dev/null || true
t_sub=$(date +%s.%N)
submitted=$(curl -s "127.0.0.1:$gw_port/metrics" | awk '/^ai_gateway_requests_total\{endpoint="\/v1\/async\/chat\/completions".*status="202"/ {s+=$NF} END {print s+0}')
while :; do
  done_=$(metric 'ai_gateway_jobs_total{status="succeeded"}')
  [ "${done_%.*}" -ge "$submitted" ] && break
  sleep 0.2
done
t1=$(date +%s.%N)
python3 -c "print(f'submitted {int($submitted)} in 10 s while running; all {int($done_)} succeeded after {$t1-$t0:.1f} s: {$done_/($t1-$t0):.0f} jobs/s end to end')"
echo "gateway RSS: $(rss $gw_pid)"
stop_gw

echo "== $mode: RSS with $depth jobs queued (1 worker on a 10 s upstream)"
start_gw 1 10s
echo "RSS empty: $(rss $gw_pid)"
python3 - "$gw_port" "$depth" <<'PY' &
import asyncio, sys
port, depth = int(sys.argv[1]), int(sys.argv[2])
async def one(i, sem):
    async with sem:
        r, w = await asyncio.open_connection("127.0.0.1", port)
        body = ('{"model":"mock","messages":[{"role":"user","content":"q %d"}]}' % i).encode()
        w.write(b"POST /v1/async/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\nconnection: close\r\ncontent-length: %d\r\n\r\n" % len(body) + body)
        await w.drain(); await r.read(); w.close()
async def main():
    sem = asyncio.Semaphore(64)
    for s in range(0, depth, 5000):
        await asyncio.gather(*(one(i, sem) for i in range(s, min(depth, s + 5000))))
asyncio.run(main())
PY
fill=$!
for target in 10000 50000 $depth; do
  while [ "$(metric ai_gateway_jobs_queued)" -lt "$target" ] 2>/dev/null && kill -0 $fill 2>/dev/null; do sleep 1; done
  echo "queued $(metric ai_gateway_jobs_queued): gateway RSS $(rss $gw_pid)${nats_pid:+, nats-server RSS $(rss $nats_pid)}"
done
wait $fill || true
stop_gw
