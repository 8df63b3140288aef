-- Cancel a job that has not finished. A scheduled job drops its waiting payload (the promoter
-- skips it); a queued job's entry is removed so it never runs; a
-- running job keeps its fencing token, so the completion script acknowledges its entry but
-- discards its result.
--
-- KEYS[1]  job hash
-- KEYS[2]  model stream (of the job's model)
-- KEYS[3]  tenants' active jobs (hash: tenant -> jobs waiting or running)
-- KEYS[4]  due webhook deliveries (sorted set; see outbox.lua)
-- KEYS[5]  the deliveries' hash (see outbox.lua)
-- KEYS[6]  (pipeline jobs only) the job's upload key, deleted with the cancellation
-- ARGV: the fields of `CancelCall` (scripts/attempts.rs), in order, named here A.<field>:
-- A.now          now, ms since the epoch
-- A.ttl          seconds a finished job record is kept when it names no `ttl` of its own
-- A.publish      PUBLISH, or on a cluster SPUBLISH (queue/events.rs)
-- A.channel      channel of terminal events
-- A.group        consumer group
-- A.id           job id
--
-- Returns the status before cancelling, or false for an unknown job.
local rec = redis.call('HMGET', KEYS[1], F.status, F.entry, F.counted, F.tenant, F.ttl,
  F.webhook)
if not rec[1] then
  return false
end
if rec[1] == 'queued' or rec[1] == 'running' or rec[1] == 'scheduled' then
  local ends = ending({now = ARGV[A.now], ttl = ARGV[A.ttl],
    publish = ARGV[A.publish], channel = ARGV[A.channel], active = KEYS[3], hooks = KEYS[4],
    deliveries = KEYS[5]})
  redis.call('HSET', KEYS[1], F.status, 'cancelled', F.finished_at, ARGV[A.now])
  redis.call('HDEL', KEYS[1], F.payload)
  redis.call('HINCRBY', KEYS[1], F.version, 1)
  if rec[1] == 'queued' and rec[2] then
    -- The group may not exist yet if no worker ever served the model.
    redis.pcall('XACK', KEYS[2], ARGV[A.group], rec[2])
    redis.call('XDEL', KEYS[2], rec[2])
  end
  ends.job(KEYS[1], ARGV[A.id], 'cancelled', rec[3], rec[4], rec[5], rec[6], KEYS[6])
  ends.flush()
end
return rec[1]
