-- Correct a token bucket by a signed number of tokens once the real usage is known.
-- KEYS[1]: bucket; ARGV: period ms, limit, delta tokens.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat == 0 then return 0 end
local emission = tonumber(ARGV[1]) / tonumber(ARGV[2])
tat = tat + emission * tonumber(ARGV[3])
if tat <= now then
  redis.call('DEL', KEYS[1])
  return 0
end
redis.call('SET', KEYS[1], tostring(tat), 'PX', math.ceil(tat - now) + 1000)
return 1
