-- Answer a job from the result cache: if a result is cached under the key, the job is written
-- already succeeded with it (and listed), without a queue entry.
--
-- KEYS[1]  cached result
-- KEYS[2]  job hash
-- KEYS[3]  listing index (stream: one entry per job, its id in field C.index_field)
-- ARGV: the fields of `CachedCall` (scripts/submit.rs), in order, named here A.<field>:
-- A.id      job id
-- A.model   model name
-- A.ttl     seconds the record is kept (the job's own retention or the API's default; written
--           into the record, as for every job)
-- A.tenant  tenant of the submitting key
--
-- Returns 1 when the job was answered from the cache, 0 on a miss (nothing written).
local result = redis.call('GET', KEYS[1])
if not result then
  return 0
end
-- Its creation (and answer) time is its listing index entry's, as for every job.
local listed = redis.call('XADD', KEYS[3], '*', C.index_field, ARGV[A.id])
local now = string.match(listed, '^%d+')
-- The whole record in one HSET; the job is new, so this is its first version.
local rec = {F.model, ARGV[A.model], F.status, 'succeeded', F.created_at, now,
  F.started_at, now, F.finished_at, now, F.result, result, F.cached, 1, F.version, 1}
if ARGV[A.tenant] ~= C.default_tenant then
  rec[#rec + 1], rec[#rec + 2] = F.tenant, ARGV[A.tenant]
end
redis.call('HSET', KEYS[2], unpack(rec))
redis.call('EXPIRE', KEYS[2], tonumber(ARGV[A.ttl]))
return 1
