-- Record a running pipeline attempt's progress, fenced by its token: a stale attempt (its
-- lease was taken over) or a cancelled job writes nothing, and learns so from the answer. A
-- recorded update bumps the record's version and is published, so event streams send it.
--
-- KEYS[1]  job hash
-- ARGV: the fields of `ProgressCall` (scripts/pipeline.rs), in order, named here A.<field>:
-- A.token     fencing token of the attempt
-- A.done      seconds of input processed
-- A.total     seconds of input in all; '' while unknown
-- A.publish   PUBLISH, or on a cluster SPUBLISH (queue/events.rs)
-- A.progress  channel of progress (non-terminal) events
-- A.id        job id
--
-- Returns 1 when recorded, 0 when the attempt no longer owns a running job (it must stop).
local rec = redis.call('HMGET', KEYS[1], F.status, F.attempts)
if rec[1] ~= 'running' or rec[2] ~= ARGV[A.token] then
  return 0
end
if ARGV[A.total] == '' then
  redis.call('HSET', KEYS[1], F.progress_done, ARGV[A.done])
  redis.call('HDEL', KEYS[1], F.progress_total)
else
  redis.call('HSET', KEYS[1], F.progress_done, ARGV[A.done], F.progress_total, ARGV[A.total])
end
redis.call('HINCRBY', KEYS[1], F.version, 1)
redis.call(ARGV[A.publish], ARGV[A.progress], ARGV[A.id] .. ' running')
return 1
