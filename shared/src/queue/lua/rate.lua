-- Take tokens from a tenant's submission bucket (a token bucket shared by every API process).
--
-- KEYS[1]  the tenant's bucket hash (fields `tokens`, `at`)
-- ARGV (`RateCall` in rate.rs):
-- A.now      now, ms since the epoch
-- A.per_sec  tokens added per second
-- A.burst    most tokens the bucket holds
-- A.cost     tokens this request takes
--
-- Returns 0 when the tokens were taken, else the milliseconds until they will be there.
local now, rate = tonumber(ARGV[A.now]), tonumber(ARGV[A.per_sec])
local burst, cost = tonumber(ARGV[A.burst]), tonumber(ARGV[A.cost])
local b = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens, at = tonumber(b[1]) or burst, tonumber(b[2]) or now
if now > at then
  tokens = math.min(burst, tokens + (now - at) * rate / 1000)
end
local wait = 0
if tokens >= cost then
  tokens = tokens - cost
else
  wait = math.ceil((cost - tokens) * 1000 / rate)
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', now)
-- A full bucket is the same as none.
redis.call('PEXPIRE', KEYS[1], math.ceil(burst * 1000 / rate) + 1000)
return wait
