-- Record a running pipeline attempt's progress, fenced by its token: a stale attempt (its
-- lease was taken over) or a cancelled job writes nothing, and learns so from the answer. A
-- recorded update bumps the record's version and is published, so event streams send it.
--
-- KEYS[1]  job hash
-- ARGV[1]  fencing token of the attempt
-- ARGV[2]  seconds of input processed
-- ARGV[3]  seconds of input in all; '' while unknown
-- ARGV[4]  channel of progress (non-terminal) events
-- ARGV[5]  job id
--
-- Returns 1 when recorded, 0 when the attempt no longer owns a running job (it must stop).
local rec = redis.call('HMGET', KEYS[1], F.status, F.token)
if rec[1] ~= 'running' or rec[2] ~= ARGV[1] then
  return 0
end
if ARGV[3] == '' then
  redis.call('HSET', KEYS[1], F.progress_done, ARGV[2])
  redis.call('HDEL', KEYS[1], F.progress_total)
else
  redis.call('HSET', KEYS[1], F.progress_done, ARGV[2], F.progress_total, ARGV[3])
end
redis.call('HINCRBY', KEYS[1], F.version, 1)
redis.call('PUBLISH', ARGV[4], ARGV[5] .. ' running')
return 1
