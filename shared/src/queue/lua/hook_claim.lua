-- Claim webhook deliveries that are due: each is pushed back by the lease (so a deliverer that
-- dies holding it gives it back when the lease runs out) and its attempt and claim counters
-- go up; the claim counter fences the outcome (`hook_done.lua`), so a deliverer whose lease
-- ran out cannot record over the one that took the delivery over.
--
-- KEYS[1]     due deliveries (sorted set: delivery id -> due time, ms)
-- KEYS[2]     the deliveries' hash (one packed field per delivery, see outbox.lua)
-- KEYS[3..]   per delivery the caller found due, in ARGV order, the hash a release before the
--             deliveries' hash kept it in
-- ARGV (`ClaimCall` in hooks.rs):
-- A.now       now, ms since the epoch
-- A.lease_ms  lease, ms
-- then the delivery ids, aligned with KEYS[3..]: one no longer due (claimed meanwhile by
-- another deliverer) is skipped; one that is nowhere leaves the set
--
-- A delivery an older release wrote is packed here: one field per delivery field in the
-- deliveries' hash, or a hash of its own (KEYS[3..]). Counters an older deliverer added beside
-- a packed delivery (it found it, could not read it, and left it to its lease) are taken in,
-- so the claim token stays above any it gave out.
--
-- Returns ten values per claimed delivery: id, claim token, attempt (1 = first), job id,
-- event, url, event time (ms), tenant, the body rendered by an earlier attempt ('' = none),
-- the exceptions to the address guard the job was submitted under ('' = none).
local now = tonumber(ARGV[A.now])
local d = KEYS[2]
local out = {}

-- The delivery whose fields are named `f` .. field (`<delivery id>:`), in whichever shape it
-- was written, as a table by `H.` name; nil when it is nowhere. Leaves no field of it but the
-- packed one, which the caller writes.
local function load(f, legacy)
  local names = {H.job, H.event, H.url, H.at, H.tenant, H.attempts, H.claim, H.body,
    H.fetch_allow}
  local fields = {}
  for i, name in ipairs(names) do fields[i] = f .. name end
  local v = redis.call('HMGET', d, unpack(fields))
  local t, stray = nil, false
  if v[1] and hook_packed(v[1]) then
    t = hook_unpack(v[1])
    for i = 6, 7 do
      if v[i] then
        stray = true
        t[names[i]] = math.max(tonumber(t[names[i]]) or 0, tonumber(v[i]) or 0)
      end
    end
  elseif v[1] then
    t, stray = {}, true
    for i, name in ipairs(names) do t[name] = v[i] end
  else
    local old = redis.call('HGETALL', legacy)
    if #old > 0 then
      t = {}
      for j = 1, #old, 2 do t[old[j]] = old[j + 1] end
      redis.call('DEL', legacy)
    end
  end
  if stray then
    table.remove(fields, 1)
    redis.call('HDEL', d, unpack(fields))
  end
  return t
end

for i = 3, #KEYS do
  local id = ARGV[A.REST + i - 3]
  local due = tonumber(redis.call('ZSCORE', KEYS[1], id))
  if due and due <= now then
    local t = load(id .. ':', KEYS[i])
    if not t then
      redis.call('ZREM', KEYS[1], id)
    else
      t[H.attempts] = (tonumber(t[H.attempts]) or 0) + 1
      t[H.claim] = (tonumber(t[H.claim]) or 0) + 1
      redis.call('HSET', d, id .. ':' .. H.job, hook_pack(t))
      redis.call('ZADD', KEYS[1], now + tonumber(ARGV[A.lease_ms]), id)
      out[#out + 1] = id
      out[#out + 1] = tostring(t[H.claim])
      out[#out + 1] = tostring(t[H.attempts])
      for _, name in ipairs({H.job, H.event, H.url, H.at, H.tenant, H.body, H.fetch_allow}) do
        out[#out + 1] = tostring(t[name] or '')
      end
    end
  end
end
return out
