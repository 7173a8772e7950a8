-- Check every bucket of one request and, only if all allow it, take from all (GCRA).
-- KEYS[1..n]: buckets; KEYS[n+1] (optional): the usage hash of the key's budget period.
-- ARGV[1]: period in ms; ARGV[2]: n; then per bucket: limit, cost; then (optional) budget in USD.
-- Returns {allowed, retry_ms, denied_index, budget_exceeded, rem_1, reset_ms_1, ..., rem_n, reset_ms_n}.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local period = tonumber(ARGV[1])
local n = tonumber(ARGV[2])
if #KEYS > n then
  local spent = tonumber(redis.call('HGET', KEYS[n + 1], 'spend') or '0')
  local budget = tonumber(ARGV[3 + 2 * n])
  if spent >= budget then
    return {0, 0, 0, 1}
  end
end
local cur = {}
local nxt = {}
local out = {1, 0, 0, 0}
for i = 1, n do
  local limit = tonumber(ARGV[1 + 2 * i])
  local cost = tonumber(ARGV[2 + 2 * i])
  local emission = period / limit
  local tat = tonumber(redis.call('GET', KEYS[i]) or '0')
  if tat < now then tat = now end
  local new_tat = tat + emission * cost
  local allow_at = new_tat - period
  if allow_at > now then
    if out[1] == 1 or allow_at - now > out[2] then
      out[2] = math.ceil(allow_at - now)
      out[3] = i
    end
    out[1] = 0
  end
  cur[i] = tat
  nxt[i] = new_tat
end
for i = 1, n do
  local limit = tonumber(ARGV[1 + 2 * i])
  local emission = period / limit
  local kept = cur[i]
  if out[1] == 1 then
    kept = nxt[i]
    redis.call('SET', KEYS[i], tostring(kept), 'PX', math.ceil(kept - now) + 1000)
  end
  local remaining = math.floor((period - (kept - now)) / emission)
  if remaining < 0 then remaining = 0 end
  out[3 + 2 * i] = remaining
  out[4 + 2 * i] = math.ceil(kept - now)
end
return out
