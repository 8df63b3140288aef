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
-- ARGV[1]    consumer group
-- ARGV[2]    now, ms since the epoch
-- ARGV[3]    seconds a finished job record is kept
-- ARGV[4]    channel of terminal events
-- ARGV[5]    model name
-- ARGV[6]    most entries kept in the list of recent failures
-- ARGV[7]    due webhook deliveries (sorted set; see outbox.lua)
-- ARGV[8]    prefix of webhook delivery hash keys
-- then two values per entry: stream entry id, job id ('' when it could not be read; such an
-- entry has no KEYS slot)
--
-- Returns how many entries were set aside.
local group, now, ttl, channel = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4]
local model, keep_failures = ARGV[5], tonumber(ARGV[6])
local message = 'the job\'s queue entry could not be read'
-- A job that ends leaves its tenant's count of active jobs (once: `counted` goes with it).
local function uncount(job, active)
  if redis.call('HDEL', job, F.counted) == 1 then
    local tenant = redis.call('HGET', job, F.tenant)
    if redis.call('HINCRBY', active, tenant, -1) <= 0 then
      redis.call('HDEL', active, tenant)
    end
  end
end
local k, moved, events = 6, 0, {}
for i = 9, #ARGV, 2 do
  local entry, id = ARGV[i], ARGV[i + 1]
  local fields = {'entry', entry, 'reason', 'malformed_entry', 'failed_at', now,
    'model', model, 'message', message}
  local job = nil
  if id ~= '' then
    job = KEYS[k]
    k = k + 1
    local tenant = redis.call('HGET', job, F.tenant)
    if tenant then
      fields[#fields + 1] = 'tenant'
      fields[#fields + 1] = tenant
    end
  end
  local e = redis.call('XRANGE', KEYS[1], entry, entry)
  if e[1] then
    for _, v in ipairs(e[1][2]) do fields[#fields + 1] = v end
  end
  local dead = redis.call('XADD', KEYS[2], 'MAXLEN', '~', 100000, '*', unpack(fields))
  if job then
    redis.call('HSET', KEYS[3], id, dead)
    local status = redis.call('HGET', job, F.status)
    if status == 'queued' or status == 'running' then
      redis.call('HSET', job, F.status, 'failed', F.finished_at, now,
        F.error_code, 'malformed_entry', F.error_message, message)
      redis.call('HINCRBY', job, F.version, 1)
      uncount(job, KEYS[5])
      redis.call('EXPIRE', job, tonumber(redis.call('HGET', job, F.ttl)) or ttl)
      events[#events + 1] = id .. ' failed'
      outbox(ARGV[7], ARGV[8], job, id, 'failed', now)
      redis.call('LPUSH', KEYS[4], cjson.encode({id = id, model = model,
        code = 'malformed_entry', message = message, failed_at = tonumber(now)}))
      redis.call('LTRIM', KEYS[4], 0, keep_failures - 1)
    end
  end
  redis.call('XACK', KEYS[1], group, entry)
  redis.call('XDEL', KEYS[1], entry)
  moved = moved + 1
end
if #events > 0 then
  redis.call('PUBLISH', channel, table.concat(events, '\n'))
end
return moved
