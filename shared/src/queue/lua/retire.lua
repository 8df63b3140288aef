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
-- KEYS[6..L+5]   the model's lanes (streams), L = ARGV[5]
-- KEYS[L+6..]    job hashes of the listed entries
-- ARGV[1]        model name
-- ARGV[2]        now, ms since the epoch
-- ARGV[3]        seconds a finished job record is kept
-- ARGV[4]        channel of terminal events
-- ARGV[5]        L, the number of lanes
-- ARGV[6]        due webhook deliveries (sorted set; see outbox.lua)
-- ARGV[7]        prefix of webhook delivery hash keys
-- ARGV[8..L+7]   id of the newest entry the caller listed in each lane ('' for an empty one)
-- ARGV[L+8..]    job ids, aligned with KEYS[L+6..]
--
-- Returns the number of jobs failed, or -1 when a stream changed since the listing.
-- A job that ends leaves its tenant's count of active jobs (once: `counted` goes with it).
local function uncount(job, active)
  if redis.call('HDEL', job, F.counted) == 1 then
    local tenant = redis.call('HGET', job, F.tenant)
    if redis.call('HINCRBY', active, tenant, -1) <= 0 then
      redis.call('HDEL', active, tenant)
    end
  end
end
local lanes = tonumber(ARGV[5])
for l = 1, lanes do
  local last = redis.call('XREVRANGE', KEYS[5 + l], '+', '-', 'COUNT', 1)
  local newest = last[1] and last[1][1] or ''
  if newest ~= ARGV[7 + l] then
    return -1
  end
end
local failed, events = 0, {}
for i = lanes + 6, #KEYS do
  local job = KEYS[i]
  local status = redis.call('HGET', job, F.status)
  if status == 'queued' or status == 'running' then
    redis.call('HSET', job, F.status, 'failed', F.finished_at, ARGV[2],
      F.error_code, 'model_retired', F.error_message, 'model \'' .. ARGV[1] .. '\' was retired')
    redis.call('HINCRBY', job, F.version, 1)
    uncount(job, KEYS[4])
    redis.call('EXPIRE', job, tonumber(redis.call('HGET', job, F.ttl)) or tonumber(ARGV[3]))
    events[#events + 1] = ARGV[i + 2] .. ' failed'
    outbox(ARGV[6], ARGV[7], job, ARGV[i + 2], 'failed', ARGV[2])
    failed = failed + 1
  end
end
for l = 1, lanes do
  redis.call('DEL', KEYS[5 + l])
end
redis.call('DEL', KEYS[5])
redis.call('DEL', KEYS[3])
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
if #events > 0 then
  redis.call('PUBLISH', ARGV[4], table.concat(events, '\n'))
end
return failed
