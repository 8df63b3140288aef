-- Set aside stream entries a worker could not read (no job id, or no payload): each is copied
-- to the dead-letter stream with reason `malformed_entry`, acknowledged and deleted, so the
-- valid entries beside it run and it is never delivered again. A job whose id could still be
-- read fails with `malformed_entry`.
--
-- KEYS[1]    model stream
-- KEYS[2]    dead-letter stream
-- KEYS[3]    dead-letter index (job id -> dead-letter entry id)
-- KEYS[4]    list of recent failures
-- KEYS[5]    tenants' active jobs (hash: tenant -> jobs waiting or running)
-- KEYS[6..]  job hashes of the entries whose job id could be read, in ARGV order
-- KEYS[#KEYS - 1], KEYS[#KEYS]  due webhook deliveries (sorted set) and the deliveries' hash
--            (see outbox.lua)
-- ARGV: the fields of `MalformedCall` (scripts/attempts.rs), in order, named here A.<field>:
-- A.group          consumer group
-- A.now            now, ms since the epoch
-- A.ttl            seconds a finished job record is kept when it names no `ttl` of its own
-- A.publish        PUBLISH, or on a cluster SPUBLISH (queue/events.rs)
-- A.channel        channel of terminal events
-- A.model          model name
-- A.keep_failures  most entries kept in the list of recent failures
-- then per entry the fields of `MalformedEntry` (J.<field>): J.entry (stream entry id),
--   J.id (job id; '' when it could not be read: such an entry has no KEYS slot)
--
-- Returns how many entries were set aside.
local group, now, model = ARGV[A.group], ARGV[A.now], ARGV[A.model]
local message = 'the job\'s queue entry could not be read'
local ends = ending({now = now, ttl = ARGV[A.ttl], publish = ARGV[A.publish],
  channel = ARGV[A.channel], active = KEYS[5], hooks = KEYS[#KEYS - 1], deliveries = KEYS[#KEYS],
  failures = KEYS[4], keep_failures = tonumber(ARGV[A.keep_failures]), model = model})
local k, moved = 6, 0
for b = A.REST, #ARGV, J.WIDTH do
  local entry, id = ARGV[b + J.entry], ARGV[b + J.id]
  local fields = {'entry', entry, 'reason', 'malformed_entry', 'failed_at', now,
    'model', model, 'message', message}
  local job, rec = nil, nil
  if id ~= '' then
    job = KEYS[k]
    k = k + 1
    rec = redis.call('HMGET', job, F.status, F.counted, F.tenant, F.ttl, F.webhook)
    if rec[3] then
      fields[#fields + 1] = 'tenant'
      fields[#fields + 1] = rec[3]
    end
  end
  local e = redis.call('XRANGE', KEYS[1], entry, entry)
  if e[1] then
    for _, v in ipairs(e[1][2]) do fields[#fields + 1] = v end
  end
  local dead = redis.call('XADD', KEYS[2], 'MAXLEN', '~', 100000, '*', unpack(fields))
  if job then
    redis.call('HSET', KEYS[3], id, dead)
    if rec[1] == 'queued' or rec[1] == 'running' then
      redis.call('HSET', job, F.status, 'failed', F.finished_at, now,
        F.error_code, 'malformed_entry', F.error_message, message)
      redis.call('HINCRBY', job, F.version, 1)
      ends.job(job, id, 'failed', rec[2], rec[3], rec[4], rec[5], nil)
      ends.failure(id, 'malformed_entry', message)
    end
  end
  redis.call('XACK', KEYS[1], group, entry)
  redis.call('XDEL', KEYS[1], entry)
  moved = moved + 1
end
ends.flush()
return moved
