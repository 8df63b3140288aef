-- Claim webhook deliveries that are due: each is pushed back by the lease (so a deliverer that
-- dies holding it gives it back when the lease runs out) and its attempt and claim counters
-- go up; the claim counter fences the outcome (`hook_done.lua`), so a deliverer whose lease
-- ran out cannot record over the one that took the delivery over.
--
-- KEYS[1]     due deliveries (sorted set: delivery id -> due time, ms)
-- KEYS[2..]   the hashes of the deliveries the caller found due, in ARGV order
-- ARGV (`ClaimCall` in hooks.rs):
-- A.now       now, ms since the epoch
-- A.lease_ms  lease, ms
-- then the delivery ids, aligned with KEYS[2..]: one no longer due (claimed meanwhile by
-- another deliverer) is skipped; one whose hash is gone leaves the set
--
-- Returns ten values per claimed delivery: id, claim token, attempt (1 = first), job id,
-- event, url, event time (ms), tenant, the body rendered by an earlier attempt ('' = none),
-- the exceptions to the address guard the job was submitted under ('' = none).
local now = tonumber(ARGV[A.now])
local out = {}
for i = 2, #KEYS do
  local id, h = ARGV[A.REST + i - 2], KEYS[i]
  local due = tonumber(redis.call('ZSCORE', KEYS[1], id))
  if due and due <= now then
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
      for j = 1, 7 do out[#out + 1] = f[j] or '' end
    end
  end
end
return out
