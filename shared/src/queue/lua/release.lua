-- Hand entries a worker holds back to the queue, at its tail, for any worker to take: a
-- stopping worker's unfinished jobs, and attempts that failed in a retryable way. A job that
-- was started keeps its attempt count (the attempt did happen).
--
-- KEYS[1]    model stream
-- KEYS[2..]  job hashes, one per entry
-- ARGV[1]    consumer group
-- ARGV[2]    channel of progress (non-terminal) events
-- then three values per entry, in KEYS order: job id, stream entry id, fencing token ('0' if
-- not started)
--
-- Returns how many jobs were put back.
local group, channel = ARGV[1], ARGV[2]
local released = 0
for i = 2, #KEYS do
  local job = KEYS[i]
  local b = 3 + (i - 2) * 3
  local id, entry, token = ARGV[b], ARGV[b + 1], ARGV[b + 2]
  local rec = redis.call('HMGET', job, F.status, F.token)
  local mine = rec[1] == 'queued' or (rec[1] == 'running' and rec[2] == token)
  local e = redis.call('XRANGE', KEYS[1], entry, entry)
  if mine and e[1] then
    local fresh = redis.call('XADD', KEYS[1], '*', unpack(e[1][2]))
    redis.call('HSET', job, F.status, 'queued', F.entry, fresh)
    redis.call('HDEL', job, F.token, F.worker, F.delivery)
    if rec[1] == 'running' then
      redis.call('HINCRBY', job, F.version, 1)
      redis.call('PUBLISH', channel, id .. ' queued')
    end
    released = released + 1
  end
  if mine or not e[1] then
    redis.call('XACK', KEYS[1], group, entry)
    redis.call('XDEL', KEYS[1], entry)
  end
end
return released
