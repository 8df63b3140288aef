-- Enqueue one pipeline job with its uploaded input: the record, the stream entry and the
-- upload are written together or not at all.
--
-- KEYS[1]  job hash
-- KEYS[2]  pipeline stream
-- KEYS[3]  upload key
-- KEYS[4]  tenants' active jobs (hash: tenant -> jobs waiting or running)
-- ARGV: the fields of `SubmitPipelineCall` (scripts/pipeline.rs), in order, named here
-- A.<field>:
-- A.id              job id
-- A.queue           queue name (`pipeline:<name>`), stored as the job's model
-- A.now             now, ms since the epoch
-- A.payload         job payload (the pipeline and its settings)
-- A.limit           most entries the stream may hold (queued plus in flight); 0 = no limit
-- A.deadline        deadline to start by, ms since the epoch; 0 = none
-- A.upload          the uploaded bytes
-- A.upload_ttl      seconds the upload is kept at most (a safety net: the job's end deletes it)
-- A.ttl             seconds to keep the record once final (written into it)
-- A.tenant          the tenant of the submitting key
-- A.quota           the most jobs that tenant may have waiting or running (0 = no limit)
-- A.others          the tenant's jobs counted in the namespace's other partitions, as the
--                   caller read them just before (0 with one partition)
-- A.webhook         the webhook URL ('' = none)
-- A.webhook_events  the webhook's events (`,succeeded,failed,`)
-- A.fetch_allow     the exceptions to the address guard the job is fetched under ('' = none):
--                   written into the entry and the record when set
--
-- Returns the stream entry id, 'QUEUE_FULL' or 'QUOTA_EXCEEDED <excess>' (the caller answers
-- 429). A job submitted under a quota counts in KEYS[4] (marked `counted` in its hash) until it
-- ends.
local limit, quota, tenant = tonumber(ARGV[A.limit]), tonumber(ARGV[A.quota]), ARGV[A.tenant]
local active = (tonumber(redis.call('HGET', KEYS[4], tenant)) or 0) + tonumber(ARGV[A.others])
if quota > 0 and active >= quota then
  return 'QUOTA_EXCEEDED ' .. (active - quota + 1)
end
if limit > 0 and redis.call('XLEN', KEYS[2]) >= limit then
  return 'QUEUE_FULL'
end
redis.call('SET', KEYS[3], ARGV[A.upload], 'EX', tonumber(ARGV[A.upload_ttl]))
local fields = {E.id, ARGV[A.id], E.payload, ARGV[A.payload]}
if ARGV[A.fetch_allow] ~= '' then
  fields[#fields + 1], fields[#fields + 2] = E.fetch_allow, ARGV[A.fetch_allow]
end
local entry = redis.call('XADD', KEYS[2], '*', unpack(fields))
-- The whole record in one HSET; the job is new, so this is its first version.
local rec = {F.model, ARGV[A.queue], F.status, 'queued', F.created_at, ARGV[A.now],
  F.entry, entry, F.version, 1, F.ttl, ARGV[A.ttl]}
if tonumber(ARGV[A.deadline]) > 0 then
  rec[#rec + 1], rec[#rec + 2] = F.deadline, ARGV[A.deadline]
end
if tenant ~= C.default_tenant then
  rec[#rec + 1], rec[#rec + 2] = F.tenant, tenant
end
if quota > 0 then
  rec[#rec + 1], rec[#rec + 2] = F.counted, 1
end
if ARGV[A.fetch_allow] ~= '' then
  rec[#rec + 1], rec[#rec + 2] = F.fetch_allow, ARGV[A.fetch_allow]
end
if ARGV[A.webhook] ~= '' then
  rec[#rec + 1], rec[#rec + 2] = F.webhook, ARGV[A.webhook]
  rec[#rec + 1], rec[#rec + 2] = F.webhook_events, ARGV[A.webhook_events]
  rec[#rec + 1], rec[#rec + 2] = F.webhook_state, 'pending'
  rec[#rec + 1], rec[#rec + 2] = F.webhook_attempts, 0
end
redis.call('HSET', KEYS[1], unpack(rec))
if quota > 0 then
  redis.call('HINCRBY', KEYS[4], tenant, 1)
end
return entry
