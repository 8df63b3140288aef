-- Retire a model: it leaves the registry (new submissions get `unknown_model`), every job
-- still waiting in its streams fails with `model_retired`, and the streams are deleted. The
-- caller lists the streams' jobs first; if entries were added since (a submission raced the
-- listing), nothing is changed and the caller lists again. The model's used-lanes set goes
-- with its lanes.
--
-- KEYS[1]        model registry hash
-- KEYS[2]        sorted set of models' last announcement
-- KEYS[3]        sorted set of the model's workers
-- KEYS[4]        tenants' active jobs (hash: tenant -> jobs waiting or running)
-- KEYS[5]        the model's used-lanes set (its lanes other than the default that ever held
--                an entry)
-- KEYS[6..L+5]   the model's lanes (streams), L = A.lanes
-- KEYS[L+6..]    job hashes of the listed entries
-- KEYS[#KEYS - 1], KEYS[#KEYS]  due webhook deliveries (sorted set) and the deliveries' hash
--            (see outbox.lua)
-- ARGV: the fields of `RetireCall` (registry.rs), in order, named here A.<field>:
-- A.model        model name
-- A.now          now, ms since the epoch
-- A.ttl          seconds a finished job record is kept when it names no `ttl` of its own
-- A.publish      PUBLISH, or on a cluster SPUBLISH (queue/events.rs)
-- A.channel      channel of terminal events
-- A.lanes        L, the number of lanes
-- then L values: the id of the newest entry the caller listed in each lane ('' for an empty
-- one), in KEYS order; then the job ids, aligned with KEYS[L+6..]
--
-- Returns the number of jobs failed, or -1 when a stream changed since the listing.
local model, now = ARGV[A.model], ARGV[A.now]
local lanes = tonumber(ARGV[A.lanes])
for l = 1, lanes do
  local last = redis.call('XREVRANGE', KEYS[5 + l], '+', '-', 'COUNT', 1)
  local newest = last[1] and last[1][1] or ''
  if newest ~= ARGV[A.REST - 1 + l] then
    return -1
  end
end
local ends = ending({now = now, ttl = ARGV[A.ttl], publish = ARGV[A.publish],
  channel = ARGV[A.channel], active = KEYS[4], hooks = KEYS[#KEYS - 1], deliveries = KEYS[#KEYS]})
local failed = 0
for i = lanes + 6, #KEYS - 2 do
  local job, id = KEYS[i], ARGV[A.REST - 6 + i]
  local rec = redis.call('HMGET', job, F.status, F.counted, F.tenant, F.ttl, F.webhook)
  if rec[1] == 'queued' or rec[1] == 'running' then
    redis.call('HSET', job, F.status, 'failed', F.finished_at, now,
      F.error_code, 'model_retired', F.error_message, 'model \'' .. model .. '\' was retired')
    redis.call('HINCRBY', job, F.version, 1)
    ends.job(job, id, 'failed', rec[2], rec[3], rec[4], rec[5], nil)
    failed = failed + 1
  end
end
for l = 1, lanes do
  redis.call('DEL', KEYS[5 + l])
end
redis.call('DEL', KEYS[5])
redis.call('DEL', KEYS[3])
redis.call('HDEL', KEYS[1], model)
redis.call('ZREM', KEYS[2], model)
ends.flush()
return failed
