-- Begin an attempt on each stream entry a worker has just read or reclaimed.
--
-- KEYS[1]    model stream
-- KEYS[2]    dead-letter stream
-- KEYS[3]    dead-letter index (job id -> dead-letter entry id)
-- KEYS[4]    list of recent failures
-- KEYS[5]    tenants' active jobs (hash: tenant -> jobs waiting or running)
-- KEYS[6..]  job hashes, one per entry
-- KEYS[#KEYS - 1], KEYS[#KEYS]  due webhook deliveries (sorted set) and the deliveries' hash
--            (see outbox.lua)
-- ARGV: the fields of `StartCall` (scripts/attempts.rs), in order, named here A.<field>:
-- A.group          consumer group
-- A.now            now, ms since the epoch
-- A.max_attempts   maximum attempts per job
-- A.publish        PUBLISH, or on a cluster SPUBLISH (queue/events.rs)
-- A.channel        channel of terminal events
-- A.ttl            seconds a finished job record is kept when it names no `ttl` of its own
-- A.consumer       consumer (worker) name
-- A.progress       channel of progress (non-terminal) events
-- A.model          model name
-- A.keep_failures  most entries kept in the list of recent failures
-- A.low, A.high    the least and the greatest of the entries' ids ('' when there are none)
-- then per entry, aligned with KEYS[6..], the fields of `StartEntry` (J.<field>):
--   J.id (job id), J.entry (stream entry id)
-- KEYS[6 + n..]  (pipeline streams only) the entries' upload keys, in the same order, n = the
--                number of entries: deleted when the job is not to run (it ended), and the
--                previous attempt's progress is cleared when it starts again
--
-- Returns one integer per entry: the attempt's fencing token (> 0: the attempt number, which
-- is also the record's `attempts` while the attempt runs) when the worker must run
-- the job, or 0 when it must not (already finished or cancelled, deadline passed, or attempts
-- used up; the last two are failed here). Entries not to run are acknowledged and deleted.
--
-- An entry this consumer no longer owns (its lease lapsed and another worker reclaimed it
-- while a start was being retried) is not started and not touched: it is the other worker's.
--
-- Idempotent per delivery: a delivery is an entry plus its delivery count (each read or
-- reclaim increments it). Starting the same delivery again (a retry after an ambiguous error)
-- returns the token it already got and adds no attempt.
-- Events go out as one message per channel, one `<id> <status>` line per job.
-- Values are written as the strings they arrived as, and numbers computed here as strings
-- made by tostring: Redis 7.0 formats a number passed to redis.call with `%.17g`, which costs
-- more than most of the commands here (docs/benchmarks.md, "What a script's step costs").
local group, now_s = ARGV[A.group], ARGV[A.now]
local now = tonumber(now_s)
local max_attempts, consumer, progress = tonumber(ARGV[A.max_attempts]), ARGV[A.consumer],
  ARGV[A.progress]
local model = ARGV[A.model]
local out, started_events = {}, {}
local n = (#ARGV - A.REST + 1) / J.WIDTH
local uploads = #KEYS - 2 > 5 + n
local hooks, deliveries = KEYS[#KEYS - 1], KEYS[#KEYS]
local ends = ending({now = now_s, ttl = ARGV[A.ttl], publish = ARGV[A.publish],
  channel = ARGV[A.channel], active = KEYS[5], hooks = hooks, deliveries = deliveries,
  failures = KEYS[4], keep_failures = tonumber(ARGV[A.keep_failures]), model = model})

-- `rec` is the job's HMGET below; `upload` its upload key, or nil.
local function fail(job, id, code, message, rec, upload)
  redis.call('HSET', job, F.status, 'failed', F.finished_at, now_s,
    F.error_code, code, F.error_message, message, F.version, tostring((tonumber(rec[6]) or 0) + 1))
  ends.job(job, id, 'failed', rec[7], rec[8], rec[9], rec[10], upload)
  ends.failure(id, code, message)
end

-- Which of the entries this consumer holds, and their delivery counts: one XPENDING over the
-- span of the call's entries (this consumer's pending entries in it are at most the ones it
-- is starting and the few it is still running), not one per entry.
local low, high = ARGV[A.low], ARGV[A.high]
local held = {}
if low ~= '' then
  for _, p in ipairs(redis.call('XPENDING', KEYS[1], group, low, high, 1000000, consumer)) do
    held[p[1]] = p[4]
  end
end

for i = 6, 5 + n do
  local job = KEYS[i]
  local b = A.REST + (i - 6) * J.WIDTH
  local id, entry = ARGV[b + J.id], ARGV[b + J.entry]
  local upload = uploads and KEYS[i + n] or nil
  local rec = redis.call('HMGET', job, F.status, F.attempts, F.deadline, F.delivery, F.entry,
    F.version, F.counted, F.tenant, F.ttl, F.webhook, F.webhook_events)
  local owned = held[entry] ~= nil
  -- A delivery is the entry (the record's `entry`) and its delivery count (`delivery`).
  local delivery = tostring(held[entry] or 0)
  local token, ended = 0, false
  if not owned then
    token = -1
  elseif rec[1] == 'running' and rec[4] == delivery and rec[5] == entry then
    token = tonumber(rec[2]) or 0
  elseif rec[1] == 'queued' or rec[1] == 'running' then
    local attempts = tonumber(rec[2]) or 0
    local deadline = tonumber(rec[3]) or 0
    if deadline > 0 and now > deadline then
      fail(job, id, 'deadline_exceeded', 'the job did not start before its deadline', rec, upload)
      ended = true
    elseif attempts >= max_attempts then
      local message = 'the job was started ' .. attempts ..
        (attempts == 1 and ' time' or ' times') ..
        ' and its worker stopped before finishing each time; it was moved to the dead-letter stream'
      fail(job, id, 'max_attempts_exceeded', message, rec, upload)
      ended = true
      local fields = {'reason', 'max_attempts_exceeded', 'failed_at', now_s, 'model', model,
        'attempts', attempts, 'message', message}
      fields[#fields + 1] = 'tenant'
      fields[#fields + 1] = rec[8] or C.default_tenant
      local e = redis.call('XRANGE', KEYS[1], entry, entry)
      if e[1] then
        for _, v in ipairs(e[1][2]) do fields[#fields + 1] = v end
      else
        fields[#fields + 1] = E.id
        fields[#fields + 1] = id
      end
      -- Capped, so a flood of poison jobs cannot fill Redis; the newest are kept.
      local dead = redis.call('XADD', KEYS[2], 'MAXLEN', '~', 100000, '*', unpack(fields))
      redis.call('HSET', KEYS[3], id, dead)
    else
      token = attempts + 1
      redis.call('HSET', job, F.status, 'running', F.attempts, tostring(token),
        F.started_at, now_s, F.worker, consumer, F.entry, entry, F.delivery, delivery,
        F.version, tostring((tonumber(rec[6]) or 0) + 1))
      started_events[#started_events + 1] = id .. ' running'
      -- The outbox writes nothing for a webhook that does not announce `started`.
      if rec[10] and string.find(rec[11] or '', ',started,', 1, true) then
        outbox(hooks, deliveries, job, id, 'started', now)
      end
      if uploads then
        redis.call('HDEL', job, F.progress_done, F.progress_total)
      end
    end
  end
  -- A job that ended before this delivery leaves its upload behind too.
  if token == 0 and uploads and not ended then
    redis.call('DEL', upload)
  end
  if token == 0 then
    redis.call('XACK', KEYS[1], group, entry)
    redis.call('XDEL', KEYS[1], entry)
  end
  out[#out + 1] = math.max(token, 0)
end
ends.flush()
if #started_events > 0 then
  redis.call(ARGV[A.publish], progress, table.concat(started_events, '\n'))
end
return out
