-- Answer a job from the result cache: if a result is cached under the key, the job is written
-- already succeeded with it (and listed), without a queue entry.
--
-- KEYS[1]  cached result
-- KEYS[2]  job hash
-- KEYS[3]  index of jobs by creation time
-- ARGV[1]  job id
-- ARGV[2]  model name
-- ARGV[3]  now, ms since the epoch
-- ARGV[4]  seconds the record is kept
-- ARGV[5]  the job's own retention in seconds (0 = the default)
-- ARGV[6]  tenant of the submitting key
--
-- Returns 1 when the job was answered from the cache, 0 on a miss (nothing written).
local result = redis.call('GET', KEYS[1])
if not result then
  return 0
end
-- The whole record in one HSET; the job is new, so this is its first version.
local rec = {F.model, ARGV[2], F.status, 'succeeded', F.created_at, ARGV[3],
  F.started_at, ARGV[3], F.finished_at, ARGV[3], F.attempts, 0, F.result, result,
  F.cached, 1, F.deadline, 0, F.tenant, ARGV[6], F.version, 1}
if ARGV[5] ~= '0' then
  rec[#rec + 1], rec[#rec + 2] = F.ttl, ARGV[5]
end
redis.call('HSET', KEYS[2], unpack(rec))
redis.call('EXPIRE', KEYS[2], tonumber(ARGV[4]))
redis.call('ZADD', KEYS[3], ARGV[3], ARGV[1])
return 1
