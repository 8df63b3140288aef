-- Move scheduled jobs that are due to their models' streams: each becomes `queued`, its
-- payload (and traceparent, if any) leave its hash for the stream entry. Jobs no longer
-- scheduled (cancelled, or gone) just leave the set. Run by every worker a few times a
-- second; each job moves once.
--
-- KEYS[1]  scheduled jobs (sorted set by due time)
-- then three keys per job the caller found due: its hash, the stream of its model's lane for
--   its priority, the model's used-lanes set (for a job whose record was gone, KEYS[1] twice)
-- ARGV: the fields of `PromoteCall` (scripts/submit.rs), in order, named here A.<field>:
-- A.now       now, ms since the epoch
-- A.publish   PUBLISH, or on a cluster SPUBLISH (queue/events.rs)
-- A.progress  channel of progress (non-terminal) events
-- then per job the fields of `PromoteJob` (J.<field>), in KEYS order: J.id, J.model and
--   J.priority as the caller read them; a job that is no longer due, or whose record now
--   names another lane, is left for the next call.
--
-- Returns how many jobs moved.
local now = tonumber(ARGV[A.now])
local moved, events = 0, {}
for i = 0, (#KEYS - 1) / 3 - 1 do
  local job, stream, used = KEYS[2 + i * 3], KEYS[3 + i * 3], KEYS[4 + i * 3]
  local b = A.REST + i * J.WIDTH
  local id, model, priority = ARGV[b + J.id], ARGV[b + J.model], ARGV[b + J.priority]
  local due = tonumber(redis.call('ZSCORE', KEYS[1], id))
  local rec = redis.call('HMGET', job, F.status, F.model, F.payload, F.traceparent, F.priority,
    F.version, F.fetch_allow)
  local lane = rec[5] or C.default_priority
  if not due or due > now then
    -- Moved or rescheduled meanwhile.
  elseif rec[1] == 'scheduled' and rec[3] and rec[2] == model and lane == priority then
    local fields = {E.id, id, E.payload, rec[3]}
    if rec[4] then
      fields[#fields + 1], fields[#fields + 2] = E.traceparent, rec[4]
    end
    if rec[7] then
      fields[#fields + 1], fields[#fields + 2] = E.fetch_allow, rec[7]
    end
    if priority ~= C.default_priority then
      fields[#fields + 1], fields[#fields + 2] = E.priority, priority
    end
    local entry = redis.call('XADD', stream, '*', unpack(fields))
    if priority ~= C.default_priority then
      redis.call('SADD', used, stream)
    end
    redis.call('HSET', job, F.status, 'queued', F.entry, entry,
      F.version, (tonumber(rec[6]) or 0) + 1)
    redis.call('HDEL', job, F.payload, F.traceparent)
    events[#events + 1] = id .. ' queued'
    moved = moved + 1
    redis.call('ZREM', KEYS[1], id)
  elseif rec[1] ~= 'scheduled' or not rec[3] then
    redis.call('ZREM', KEYS[1], id)
  end
end
if #events > 0 then
  redis.call(ARGV[A.publish], ARGV[A.progress], table.concat(events, '\n'))
end
return moved
