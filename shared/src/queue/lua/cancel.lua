-- Cancel a job that has not finished. A scheduled job drops its waiting payload (the promoter
-- skips it); a queued job's entry is removed so it never runs; a
-- running job keeps its fencing token, so the completion script acknowledges its entry but
-- discards its result.
--
-- KEYS[1]  job hash
-- KEYS[2]  model stream (of the job's model)
-- KEYS[3]  tenants' active jobs (hash: tenant -> jobs waiting or running)
-- KEYS[4]  (pipeline jobs only) the job's upload key, deleted with the cancellation
-- ARGV[1]  now, ms since the epoch
-- ARGV[2]  seconds a finished job record is kept
-- ARGV[3]  channel of terminal events
-- ARGV[4]  consumer group
-- ARGV[5]  job id
-- ARGV[6]  due webhook deliveries (sorted set; see outbox.lua)
-- ARGV[7]  prefix of webhook delivery hash keys
--
-- Returns the status before cancelling, or false for an unknown job.
-- A job that ends leaves its tenant's count of active jobs (once: `counted` goes with it).
local function uncount(job, active)
  if redis.call('HDEL', job, F.counted) == 1 then
    local tenant = redis.call('HGET', job, F.tenant)
    if redis.call('HINCRBY', active, tenant, -1) <= 0 then
      redis.call('HDEL', active, tenant)
    end
  end
end
local rec = redis.call('HMGET', KEYS[1], F.status, F.entry)
if not rec[1] then
  return false
end
if rec[1] == 'queued' or rec[1] == 'running' or rec[1] == 'scheduled' then
  redis.call('HSET', KEYS[1], F.status, 'cancelled', F.finished_at, ARGV[1])
  redis.call('HDEL', KEYS[1], F.payload)
  redis.call('HINCRBY', KEYS[1], F.version, 1)
  uncount(KEYS[1], KEYS[3])
  redis.call('EXPIRE', KEYS[1], tonumber(redis.call('HGET', KEYS[1], F.ttl)) or tonumber(ARGV[2]))
  if rec[1] == 'queued' and rec[2] then
    -- The group may not exist yet if no worker ever served the model.
    redis.pcall('XACK', KEYS[2], ARGV[4], rec[2])
    redis.call('XDEL', KEYS[2], rec[2])
  end
  if KEYS[4] then
    redis.call('DEL', KEYS[4])
  end
  outbox(ARGV[6], ARGV[7], KEYS[1], ARGV[5], 'cancelled', ARGV[1])
  redis.call('PUBLISH', ARGV[3], ARGV[5] .. ' cancelled')
end
return rec[1]
