-- Claim webhook deliveries that are due: each is pushed back by the lease (so a deliverer that
-- dies holding it gives it back when the lease runs out) and its attempt and claim counters
-- go up; the claim counter fences the outcome (`hook_done.lua`), so a deliverer whose lease
-- ran out cannot record over the one that took the delivery over.
--
-- KEYS[1]  due deliveries (sorted set: delivery id -> due time, ms)
-- ARGV (`ClaimCall` in hooks.rs):
-- A.now         now, ms since the epoch
-- A.count       most deliveries to claim
-- A.lease_ms    lease, ms
-- A.hook_prefix prefix of delivery hash keys (the delivery id follows; same hash tag)
--
-- Returns ten values per claimed delivery: id, claim token, attempt (1 = first), job id,
-- event, url, event time (ms), tenant, the body rendered by an earlier attempt ('' = none),
-- the exceptions to the address guard the job was submitted under ('' = none).
local now = tonumber(ARGV[A.now])
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[A.count]))
local out = {}
for _, id in ipairs(due) do
  local h = ARGV[A.hook_prefix] .. id
  if redis.call('EXISTS', h) == 0 then
    redis.call('ZREM', KEYS[1], id)
  else
    local attempt = redis.call('HINCRBY', h, H.attempts, 1)
    local claim = redis.call('HINCRBY', h, H.claim, 1)
    redis.call('ZADD', KEYS[1], now + tonumber(ARGV[A.lease_ms]), id)
    local f = redis.call('HMGET', h, H.job, H.event, H.url, H.at, H.tenant, H.body,
      H.fetch_allow)
    out[#out + 1] = id
    out[#out + 1] = tostring(claim)
    out[#out + 1] = tostring(attempt)
    for i = 1, 7 do out[#out + 1] = f[i] or '' end
  end
end
return out
