-- Record the outcome of attempts, fenced by their tokens.
--
-- KEYS[1]    model stream
-- KEYS[2]    the model's count of jobs finished in the current second
-- KEYS[3]    list of recent failures
-- KEYS[4]    tenants' active jobs (hash: tenant -> jobs waiting or running)
-- KEYS[5..]  job hashes, one per outcome
-- KEYS[5 + n..]  (pipeline streams only) the jobs' upload keys, in the same order, n = the
--                number of outcomes: deleted once the job has ended (recorded here, or ended
--                before); left alone while a newer attempt runs
-- KEYS[#KEYS - 1], KEYS[#KEYS]  due webhook deliveries (sorted set) and the deliveries' hash
--            (see outbox.lua)
-- ARGV: the fields of `CompleteCall` (scripts/attempts.rs), in order, named here A.<field>:
-- A.group          consumer group
-- A.now            now, ms since the epoch
-- A.ttl            seconds a finished job record is kept when it names no `ttl` of its own
-- A.publish        PUBLISH, or on a cluster SPUBLISH (queue/events.rs)
-- A.channel        channel of terminal events (one message, one `<id> <status>` line per job)
-- A.model          model name
-- A.keep_failures  most entries kept in the list of recent failures
-- then per outcome, in KEYS order, the fields of `CompleteOutcome` (J.<field>):
--   J.id (job id), J.entry (stream entry id), J.token (fencing token),
--   J.status ('succeeded' | 'failed'), J.value (result | error code),
--   J.message ('' | error message)
--
-- Returns one integer per outcome: 1 recorded; 0 discarded because a newer attempt owns the
-- job (its lease expired and another worker reclaimed it) or the job was cancelled meanwhile.
local group, now = ARGV[A.group], ARGV[A.now]
local ends = ending({now = now, ttl = ARGV[A.ttl], publish = ARGV[A.publish],
  channel = ARGV[A.channel], active = KEYS[4], hooks = KEYS[#KEYS - 1],
  deliveries = KEYS[#KEYS], done = KEYS[2],
  failures = KEYS[3], keep_failures = tonumber(ARGV[A.keep_failures]), model = ARGV[A.model]})
local out, acks = {}, {}
local n = (#ARGV - A.REST + 1) / J.WIDTH
local uploads = #KEYS - 2 > 4 + n
for i = 5, 4 + n do
  local job = KEYS[i]
  local b = A.REST + (i - 5) * J.WIDTH
  local id, entry, token = ARGV[b + J.id], ARGV[b + J.entry], ARGV[b + J.token]
  local status, a, c = ARGV[b + J.status], ARGV[b + J.value], ARGV[b + J.message]
  local upload = uploads and KEYS[i + n] or nil
  local rec = redis.call('HMGET', job, F.status, F.attempts, F.ttl, F.cache_key, F.cache_ttl,
    F.version, F.counted, F.tenant, F.webhook)
  local done = 0
  if rec[2] == token then
    if rec[1] == 'running' then
      -- A string: a number passed to redis.call costs a `%.17g` (see start.lua).
      local version = tostring((tonumber(rec[6]) or 0) + 1)
      if status == 'succeeded' then
        redis.call('HSET', job, F.status, status, F.finished_at, now, F.result, a,
          F.version, version)
        if rec[4] then
          redis.call('SET', rec[4], a, 'EX', rec[5])
        end
      else
        redis.call('HSET', job, F.status, status, F.finished_at, now,
          F.error_code, a, F.error_message, c, F.version, version)
        ends.failure(id, a, c)
      end
      ends.job(job, id, status, rec[7], rec[8], rec[3], rec[9], upload)
      done = 1
    end
    acks[#acks + 1] = entry
  end
  -- A job that ended before leaves its upload behind too.
  if upload and done == 0 and rec[1] ~= 'running' and rec[1] ~= 'queued' then
    redis.call('DEL', upload)
  end
  out[#out + 1] = done
end
-- The answered entries are acknowledged and deleted together, a slice at a time (unpack has
-- a limit).
for j = 1, #acks, 1000 do
  local part = {unpack(acks, j, math.min(j + 999, #acks))}
  redis.call('XACK', KEYS[1], group, unpack(part))
  redis.call('XDEL', KEYS[1], unpack(part))
end
ends.flush()
return out
