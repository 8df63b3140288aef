-- Claim webhook deliveries that are due: each is pushed back by the lease (so a deliverer that
-- dies holding it gives it back when the lease runs out) and its attempt and claim counters
-- go up; the claim counter fences the outcome (`hook_done.lua`), so a deliverer whose lease
-- ran out cannot record over the one that took the delivery over.
--
-- KEYS[1]     due deliveries (sorted set: delivery id -> due time, ms)
-- KEYS[2]     the deliveries' hash (`<delivery id>:<field>`, see outbox.lua)
-- KEYS[3..]   per delivery the caller found due, in ARGV order, the hash a release before the
--             deliveries' hash kept it in: one still there is moved into the deliveries' hash
-- ARGV (`ClaimCall` in hooks.rs):
-- A.now       now, ms since the epoch
-- A.lease_ms  lease, ms
-- then the delivery ids, aligned with KEYS[3..]: one no longer due (claimed meanwhile by
-- another deliverer) is skipped; one that is nowhere leaves the set
--
-- Returns ten values per claimed delivery: id, claim token, attempt (1 = first), job id,
-- event, url, event time (ms), tenant, the body rendered by an earlier attempt ('' = none),
-- the exceptions to the address guard the job was submitted under ('' = none).
local now = tonumber(ARGV[A.now])
local d = KEYS[2]
local out = {}
for i = 3, #KEYS do
  local id, legacy = ARGV[A.REST + i - 3], KEYS[i]
  local f = id .. ':'
  local due = tonumber(redis.call('ZSCORE', KEYS[1], id))
  if due and due <= now then
    if redis.call('HEXISTS', d, f .. H.job) == 0 then
      local old = redis.call('HGETALL', legacy)
      for j = 1, #old, 2 do
        redis.call('HSET', d, f .. old[j], old[j + 1])
      end
      redis.call('DEL', legacy)
    end
    if redis.call('HEXISTS', d, f .. H.job) == 0 then
      redis.call('ZREM', KEYS[1], id)
    else
      local attempt = redis.call('HINCRBY', d, f .. H.attempts, 1)
      local claim = redis.call('HINCRBY', d, f .. H.claim, 1)
      redis.call('ZADD', KEYS[1], now + tonumber(ARGV[A.lease_ms]), id)
      local v = redis.call('HMGET', d, f .. H.job, f .. H.event, f .. H.url, f .. H.at,
        f .. H.tenant, f .. H.body, f .. H.fetch_allow)
      out[#out + 1] = id
      out[#out + 1] = tostring(claim)
      out[#out + 1] = tostring(attempt)
      for j = 1, 7 do out[#out + 1] = v[j] or '' end
    end
  end
end
return out
