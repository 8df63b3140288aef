-- Hand entries a worker holds back to the queue, at its tail, for any worker to take: a
-- stopping worker's unfinished jobs, and attempts that failed in a retryable way. A job that
-- was started keeps its attempt count (the attempt did happen).
--
-- KEYS[1]    model stream
-- KEYS[2]    the model's used-lanes set (its lanes other than the default that ever held an
--            entry)
-- KEYS[3..]  job hashes, one per entry
-- ARGV: the fields of `ReleaseCall` (scripts/attempts.rs), in order, named here A.<field>:
-- A.group       consumer group
-- A.publish     PUBLISH, or on a cluster SPUBLISH (queue/events.rs)
-- A.progress    channel of progress (non-terminal) events
-- A.other_lane  '1' when KEYS[1] is not the model's default lane: it is then added to KEYS[2]
--               when an entry is put back
-- then per entry, in KEYS[3..] order, the fields of `ReleaseEntry` (J.<field>): J.id (job id),
--   J.entry (stream entry id), J.token (fencing token; '0' if not started)
--
-- Returns how many jobs were put back.
local group, channel, other = ARGV[A.group], ARGV[A.progress], ARGV[A.other_lane] == '1'
local released = 0
for i = 3, #KEYS do
  local job = KEYS[i]
  local b = A.REST + (i - 3) * J.WIDTH
  local id, entry, token = ARGV[b + J.id], ARGV[b + J.entry], ARGV[b + J.token]
  local rec = redis.call('HMGET', job, F.status, F.attempts, F.version)
  local mine = rec[1] == 'queued' or (rec[1] == 'running' and rec[2] == token)
  local e = redis.call('XRANGE', KEYS[1], entry, entry)
  if mine and e[1] then
    local fresh = redis.call('XADD', KEYS[1], '*', unpack(e[1][2]))
    if other and released == 0 then
      redis.call('SADD', KEYS[2], KEYS[1])
    end
    if rec[1] == 'running' then
      redis.call('HSET', job, F.status, 'queued', F.entry, fresh,
        F.version, (tonumber(rec[3]) or 0) + 1)
    else
      redis.call('HSET', job, F.status, 'queued', F.entry, fresh)
    end
    redis.call('HDEL', job, F.worker, F.delivery)
    if rec[1] == 'running' then
      redis.call(ARGV[A.publish], channel, id .. ' queued')
    end
    released = released + 1
  end
  if mine or not e[1] then
    redis.call('XACK', KEYS[1], group, entry)
    redis.call('XDEL', KEYS[1], entry)
  end
end
return released
