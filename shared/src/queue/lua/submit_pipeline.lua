-- Enqueue one pipeline job with its uploaded input: the record, the stream entry and the
-- upload are written together or not at all.
--
-- KEYS[1]  job hash
-- KEYS[2]  pipeline stream
-- KEYS[3]  upload key
-- KEYS[4]  tenants' active jobs (hash: tenant -> jobs waiting or running)
-- ARGV[1]  job id
-- ARGV[2]  queue name (`pipeline:<name>`), stored as the job's model
-- ARGV[3]  now, ms since the epoch
-- ARGV[4]  job payload (the pipeline and its settings)
-- ARGV[5]  most entries the stream may hold (queued plus in flight); 0 = no limit
-- ARGV[6]  deadline to start by, ms since the epoch; 0 = none
-- ARGV[7]  the uploaded bytes
-- ARGV[8]  seconds the upload is kept at most (a safety net: the job's end deletes it)
-- ARGV[9]  the tenant of the submitting key
-- ARGV[10] the most jobs that tenant may have waiting or running (0 = no limit)
-- ARGV[11] the webhook URL ('' = none)
-- ARGV[12] the webhook's events (`,succeeded,failed,`)
--
-- Returns the stream entry id, 'QUEUE_FULL' or 'QUOTA_EXCEEDED <excess>' (the caller answers
-- 429). An enqueued job counts in KEYS[4] (marked `counted` in its hash) until it ends.
local limit, quota = tonumber(ARGV[5]), tonumber(ARGV[10])
local active = tonumber(redis.call('HGET', KEYS[4], ARGV[9])) or 0
if quota > 0 and active >= quota then
  return 'QUOTA_EXCEEDED ' .. (active - quota + 1)
end
if limit > 0 and redis.call('XLEN', KEYS[2]) >= limit then
  return 'QUEUE_FULL'
end
redis.call('SET', KEYS[3], ARGV[7], 'EX', tonumber(ARGV[8]))
local entry = redis.call('XADD', KEYS[2], '*', E.id, ARGV[1], E.payload, ARGV[4])
-- The whole record in one HSET; the job is new, so this is its first version.
local rec = {F.model, ARGV[2], F.status, 'queued', F.created_at, ARGV[3],
  F.attempts, 0, F.entry, entry, F.deadline, ARGV[6], F.tenant, ARGV[9],
  F.version, 1, F.counted, 1}
if ARGV[11] ~= '' then
  rec[#rec + 1], rec[#rec + 2] = F.webhook, ARGV[11]
  rec[#rec + 1], rec[#rec + 2] = F.webhook_events, ARGV[12]
  rec[#rec + 1], rec[#rec + 2] = F.webhook_state, 'pending'
  rec[#rec + 1], rec[#rec + 2] = F.webhook_attempts, 0
end
redis.call('HSET', KEYS[1], unpack(rec))
redis.call('HINCRBY', KEYS[4], ARGV[9], 1)
return entry
