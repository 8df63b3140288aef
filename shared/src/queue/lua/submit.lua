-- Enqueue one job: its record and its stream entry are written together or not at all.
--
-- KEYS[1]  job hash
-- KEYS[2]  model stream
-- KEYS[3]  model registry hash (a retired model is no longer in it)
-- ARGV[1]  job id
-- ARGV[2]  model name
-- ARGV[3]  now, ms since the epoch
-- ARGV[4]  request payload
-- ARGV[5]  most entries the stream may hold (queued plus in flight); 0 = no limit
-- ARGV[6]  deadline to start by, ms since the epoch; 0 = none
--
-- Returns the stream entry id, 'QUEUE_FULL' (the caller answers 429) or 'UNKNOWN_MODEL'.
if redis.call('HEXISTS', KEYS[3], ARGV[2]) == 0 then
  return 'UNKNOWN_MODEL'
end
local limit = tonumber(ARGV[5])
if limit > 0 and redis.call('XLEN', KEYS[2]) >= limit then
  return 'QUEUE_FULL'
end
local entry = redis.call('XADD', KEYS[2], '*', E.id, ARGV[1], E.payload, ARGV[4])
redis.call('HSET', KEYS[1],
  F.model, ARGV[2], F.status, 'queued', F.created_at, ARGV[3],
  F.attempts, 0, F.entry, entry, F.deadline, ARGV[6])
return entry
