-- Move scheduled jobs that are due to their models' streams: each becomes `queued`, its
-- payload (and traceparent, if any) leave its hash for the stream entry. Jobs no longer
-- scheduled (cancelled) just leave the set. Run by every worker a few times a second; each
-- job moves once.
--
-- KEYS[1]  scheduled jobs (sorted set by due time)
-- ARGV: the fields of `PromoteCall` (scripts/submit.rs), in order, named here A.<field>:
-- A.now                now, ms since the epoch
-- A.count              most jobs to move
-- A.job_prefix         prefix of job hash keys (the job id follows)
-- A.stream_prefix      prefix of model stream keys (the model name follows, then
--                      '#<priority>' for a priority other than the default)
-- A.progress           channel of progress (non-terminal) events
-- A.used_lanes_suffix  suffix of a model's used-lanes set key (after its default stream's
--                      key): a lane other than the default is added to that set as it gets an
--                      entry
--
-- Job, stream and set keys are built from the prefixes: they share the namespace's hash tag, so
-- they are in this script's Cluster slot.
--
-- Returns how many jobs moved.
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[A.now], 'LIMIT', 0,
  tonumber(ARGV[A.count]))
local moved, events = 0, {}
for _, id in ipairs(due) do
  local job = ARGV[A.job_prefix] .. id
  local rec = redis.call('HMGET', job, F.status, F.model, F.payload, F.traceparent, F.priority,
    F.version, F.fetch_allow)
  if rec[1] == 'scheduled' and rec[3] then
    local fields = {E.id, id, E.payload, rec[3]}
    if rec[4] then
      fields[#fields + 1], fields[#fields + 2] = E.traceparent, rec[4]
    end
    if rec[7] then
      fields[#fields + 1], fields[#fields + 2] = E.fetch_allow, rec[7]
    end
    local stream = ARGV[A.stream_prefix] .. rec[2]
    local used = nil
    if rec[5] and rec[5] ~= C.default_priority then
      fields[#fields + 1], fields[#fields + 2] = E.priority, rec[5]
      used = stream .. ARGV[A.used_lanes_suffix]
      stream = stream .. '#' .. rec[5]
    end
    local entry = redis.call('XADD', stream, '*', unpack(fields))
    if used then
      redis.call('SADD', used, stream)
    end
    redis.call('HSET', job, F.status, 'queued', F.entry, entry,
      F.version, (tonumber(rec[6]) or 0) + 1)
    redis.call('HDEL', job, F.payload, F.traceparent)
    events[#events + 1] = id .. ' queued'
    moved = moved + 1
  end
  redis.call('ZREM', KEYS[1], id)
end
if #events > 0 then
  redis.call('PUBLISH', ARGV[A.progress], table.concat(events, '\n'))
end
return moved
