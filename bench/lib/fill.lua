-- wrk script: FILL_N distinct chat requests (the user message carries a counter), cycled.
-- FILL_STOP=1 (default): fill a cache; the thread stops once FILL_N + FILL_SLACK answers came
-- back, so every one of the FILL_N first requests has been answered (the ones still in flight at
-- the stop are repeats). FILL_STOP=0: cycle over the FILL_N requests for wrk's duration (L2
-- hits: every request comes back only after FILL_N - 1 others). FILL_START: first index, so that
-- several wrk runs continue the cycle. Non-2xx answers count as wrk's status errors. Prints the
-- same WRK_JSON summary line as post.lua. FILL_FORMAT: the JSON body with one %d (the index).
-- wrk keeps sleeping for its -d after the thread stopped: the thread writes FILL_DONE_FILE, and
-- lib/cache_fill.py then interrupts wrk (SIGINT), which prints its summary and exits.
local n = tonumber(os.getenv("FILL_N") or "100000")
local slack = tonumber(os.getenv("FILL_SLACK") or "256")
local fmt = os.getenv("FILL_FORMAT") or
  '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"cache fill entry number %d"}],"max_tokens":16}'
local done_file = os.getenv("FILL_DONE_FILE")
local stop = (os.getenv("FILL_STOP") or "1") == "1"
local sent, answered = tonumber(os.getenv("FILL_START") or "0"), 0
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"

request = function()
  local k = sent % n
  sent = sent + 1
  return wrk.format(nil, nil, nil, string.format(fmt, k))
end

response = function(status, headers, body)
  answered = answered + 1
  if stop and answered == n + slack then
    if done_file then
      local f = io.open(done_file, "w")
      if f then f:write("done\n"); f:close() end
    end
    wrk.thread:stop()
  end
end

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests":%d,"duration_us":%d,"bytes":%d,"err_connect":%d,"err_read":%d,' ..
    '"err_write":%d,"err_status":%d,"err_timeout":%d,"lat_mean_us":%.1f,"lat_p50_us":%d,' ..
    '"lat_p90_us":%d,"lat_p99_us":%d,"lat_max_us":%d}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status,
    e.timeout, latency.mean, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max))
end
