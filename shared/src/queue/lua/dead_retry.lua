-- Queue a dead letter's job again: a new series of attempts under the same job id. The job
-- record is reset to `queued` (recreated if it expired) and kept until the job ends again; the
-- dead letter and its index entry are removed.
--
-- KEYS[1]  dead-letter stream
-- KEYS[2]  dead-letter index (job id -> dead-letter entry id)
-- KEYS[3]  job hash
-- KEYS[4]  the model's lane for the job's priority (the dead letter's `priority` field)
-- KEYS[5]  model registry
-- KEYS[6]  tenants' active jobs (hash: tenant -> jobs waiting or running): the job counts
--          again (beyond its tenant's quota if need be: an operator chose to retry it)
-- KEYS[7]  the model's used-lanes set (its lanes other than the default that ever held an
--          entry)
-- ARGV: the fields of `RetryCall` (dead.rs), in order, named here A.<field>:
-- A.dead_id         dead-letter entry id
-- A.id              job id
-- A.model           model name
-- A.now             now, ms since the epoch
-- A.publish         PUBLISH, or on a cluster SPUBLISH (queue/events.rs)
-- A.progress        channel of progress (non-terminal) events
-- A.default_tenant  the default tenant: the owner of a job whose record (expired) and dead
--                   letter (from before dead letters named their tenant) name none
-- A.other_lane      '1' when KEYS[4] is not the model's default lane: it is then added to
--                   KEYS[7]
-- A.ttl             seconds to keep the record once final, written into a record that names
--                   none (one that expired is written afresh)
--
-- Returns the new stream entry id, or 'not_found', 'not_retryable', 'model_unknown' or
-- 'conflict' (the job is queued or running).
local e = redis.call('XRANGE', KEYS[1], ARGV[A.dead_id], ARGV[A.dead_id])
if not e[1] then
  return 'not_found'
end
local fields, f = e[1][2], {}
for j = 1, #fields, 2 do f[fields[j]] = fields[j + 1] end
if f[E.id] ~= ARGV[A.id] or not f[E.payload] then
  return 'not_retryable'
end
if redis.call('HEXISTS', KEYS[5], ARGV[A.model]) == 0 then
  return 'model_unknown'
end
local status = redis.call('HGET', KEYS[3], F.status)
if status == 'queued' or status == 'running' then
  return 'conflict'
end
-- The dead letter holds the original entry's fields beside its own.
local meta = {reason = true, failed_at = true, model = true, attempts = true, message = true,
  entry = true, tenant = true}
local add = {}
for j = 1, #fields, 2 do
  if not meta[fields[j]] then
    add[#add + 1] = fields[j]
    add[#add + 1] = fields[j + 1]
  end
end
local fresh = redis.call('XADD', KEYS[4], '*', unpack(add))
if ARGV[A.other_lane] == '1' then
  redis.call('SADD', KEYS[7], KEYS[4])
end
redis.call('HDEL', KEYS[3], F.started_at, F.finished_at, F.worker, F.delivery, F.deadline,
  F.result, F.error_code, F.error_message)
redis.call('HSET', KEYS[3], F.model, ARGV[A.model], F.status, 'queued', F.attempts, 0,
  F.entry, fresh)
redis.call('HSETNX', KEYS[3], F.created_at, ARGV[A.now])
redis.call('HSETNX', KEYS[3], F.ttl, ARGV[A.ttl])
if f[E.priority] then
  redis.call('HSET', KEYS[3], F.priority, f[E.priority])
end
redis.call('HINCRBY', KEYS[3], F.version, 1)
redis.call('HSETNX', KEYS[3], F.tenant, f['tenant'] or ARGV[A.default_tenant])
if redis.call('HSETNX', KEYS[3], F.counted, 1) == 1 then
  redis.call('HINCRBY', KEYS[6], redis.call('HGET', KEYS[3], F.tenant), 1)
end
redis.call('PERSIST', KEYS[3])
redis.call('XDEL', KEYS[1], ARGV[A.dead_id])
redis.call('HDEL', KEYS[2], ARGV[A.id])
redis.call(ARGV[A.publish], ARGV[A.progress], ARGV[A.id] .. ' queued')
return fresh
