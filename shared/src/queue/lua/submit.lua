-- Enqueue jobs: each job's record and stream entry are written together or not at all, and
-- one call enqueues many (bulk submission costs one round trip).
--
-- KEYS[1]   model registry hash (a retired model is no longer in it): the partition's copy
-- KEYS[2]   listing index (stream: one entry per job, its id in field C.index_field)
-- KEYS[3]   group hash, when the jobs form a group (else the registry again)
-- KEYS[4]   scheduled jobs (sorted set by due time)
-- KEYS[5]   tenants' active jobs (hash: tenant -> jobs waiting or running)
-- then four keys per job: job hash, the stream of the model's lane for the job's priority,
--   the model's used-lanes set (its lanes other than the default that ever held an entry),
--   idempotency record (the job hash again when the job has no idempotency key)
-- ARGV: the fields of `SubmitCall` (scripts/submit.rs), in order, named here A.<field>:
-- A.now        now, ms since the epoch
-- A.limit      most entries a stream may hold (queued plus in flight); 0 = no limit
-- A.idem_ttl   seconds an idempotency record is kept
-- A.group      group id ('' = none): then all jobs are enqueued or none is, and the group hash
--              is written with them
-- A.group_ttl  seconds the group hash is kept
-- A.fetch_allow  the exceptions to the address guard the jobs are fetched under ('' = none):
--              written into each entry and record when set
-- then per job the fields of `SubmitJob` (J.<field>), in KEYS order:
--   J.id           job id
--   J.model        model name
--   J.payload      request payload
--   J.deadline     deadline to start by, ms since the epoch; 0 = none
--   J.ttl          seconds to keep the record once final (the job's own or the API's default)
--   J.hash         the request's hash for its idempotency key ('' = no key)
--   J.cache_key    the result-cache key to store a successful result under ('' = none)
--   J.cache_ttl    the seconds to keep it there
--   J.due          when the job may start, ms since the epoch; 0 = at once
--   J.traceparent  the W3C traceparent it was submitted with ('' = none; the entry then has
--                  no such field)
--   J.tenant       the tenant of the submitting key (a group's hash records its first job's)
--   J.priority     the job's priority (0 to 9; the default, C.default_priority, is not written
--                  down)
--   J.quota        the most jobs the tenant may have waiting or running (0 = no limit)
--   J.others       the tenant's jobs counted in the namespace's other partitions (0 with one)
--   J.webhook      the webhook URL ('' = none)
--   J.webhook_events  its events (`,succeeded,failed,`)
-- A job submitted under a quota (J.quota > 0) counts in KEYS[5] (and is marked `counted` in
-- its hash) until the step that ends it; without one it is not counted (a quota set later
-- counts the jobs submitted after it). A job not yet due is `scheduled`: its payload (and traceparent) wait in its hash,
-- its id in the scheduled set, and the queue-length limit applies when it moves to the queue.
-- The limit counts every lane of the model: its default lane (the job's lane's key without
-- '#<priority>') and the lanes in its used-lanes set, to which a lane is added when it gets
-- its first entry (same hash tag, so in this script's Cluster slot).
--
-- Returns one string per job: the stream entry id; 'QUEUE_FULL' (the caller answers 429);
-- 'UNKNOWN_MODEL'; 'QUOTA_EXCEEDED <excess>' (the tenant has its most jobs waiting or running;
-- excess = how many must end before this one, or the whole group, fits); 'REPLAY <job id>'
-- (the key was used before with the same request: that job answers); 'IDEMPOTENCY_REUSED'
-- (the key was used before with another request). For a group where one job cannot be
-- enqueued, that job's reason and 'NOT_SUBMITTED' for the others.
-- Values are compared as strings where that is enough and written as the strings they arrived
-- as (see start.lua on numbers).
local now, limit = ARGV[A.now], tonumber(ARGV[A.limit])
local now_n = tonumber(now)
local idem_ttl, group = tonumber(ARGV[A.idem_ttl]), ARGV[A.group]
local fetch_allow = ARGV[A.fetch_allow]
local count = (#KEYS - 5) / 4
local out = {}

-- What each tenant has counted in the namespace's other partitions (the caller read it just
-- before; 0 with one partition).
local elsewhere = {}
for i = 0, count - 1 do
  local b = A.REST + i * J.WIDTH
  elsewhere[ARGV[b + J.tenant]] = tonumber(ARGV[b + J.others])
end

local function active(tenant)
  return (tonumber(redis.call('HGET', KEYS[5], tenant)) or 0) + (elsewhere[tenant] or 0)
end

-- What one call learns of a model is kept for the call's other jobs (a bulk submission asks
-- once per model): whether it is registered (nothing here changes that), the lanes of its
-- used-lanes set and its backlog (both kept up to date as this call adds entries; by set key),
-- and which lanes are known to be in their set.
local registered, used_lanes, backlogs, listed = {}, {}, {}, {}

local function known(model)
  if registered[model] == nil then
    registered[model] = redis.call('HEXISTS', KEYS[1], model) == 1
  end
  return registered[model]
end

local function lanes_in(used)
  if not used_lanes[used] then
    local t = {}
    for _, lane in ipairs(redis.call('SMEMBERS', used)) do
      t[lane], listed[lane] = true, true
    end
    used_lanes[used] = t
  end
  return used_lanes[used]
end

-- Entries in all of a model's lanes, given one lane's key and the model's used-lanes set.
local function backlog(lane, used)
  if not backlogs[used] then
    local base = string.gsub(lane, '#%d$', '')
    local n = redis.call('XLEN', base)
    for other in pairs(lanes_in(used)) do
      if other ~= base then n = n + redis.call('XLEN', other) end
    end
    backlogs[used] = n
  end
  return backlogs[used]
end

-- An entry was just added to `lane`; `other` when that is not the model's default lane.
local function added(lane, used, other)
  if other and not listed[lane] then
    redis.call('SADD', used, lane)
    listed[lane] = true
    if used_lanes[used] then used_lanes[used][lane] = true end
    -- Counted afresh when next asked: the lane may hold entries this call never saw.
    backlogs[used] = nil
  end
  if backlogs[used] then backlogs[used] = backlogs[used] + 1 end
end
if group ~= '' then
  local refused, need = false, {}
  for i = 0, count - 1 do
    local tenant = ARGV[A.REST + i * J.WIDTH + J.tenant]
    need[tenant] = (need[tenant] or 0) + 1
  end
  for i = 0, count - 1 do
    local b = A.REST + i * J.WIDTH
    local model, tenant, quota = ARGV[b + J.model], ARGV[b + J.tenant], tonumber(ARGV[b + J.quota])
    local excess = active(tenant) + need[tenant] - quota
    if not known(model) then
      out[i + 1], refused = 'UNKNOWN_MODEL', true
    elseif quota > 0 and excess > 0 then
      out[i + 1], refused = 'QUOTA_EXCEEDED ' .. excess, true
    elseif limit > 0 and backlog(KEYS[7 + i * 4], KEYS[8 + i * 4]) >= limit then
      out[i + 1], refused = 'QUEUE_FULL', true
    else
      out[i + 1] = 'NOT_SUBMITTED'
    end
  end
  if refused then
    return out
  end
  out = {}
end
for i = 0, count - 1 do
  local job, stream, used, idem = KEYS[6 + i * 4], KEYS[7 + i * 4], KEYS[8 + i * 4], KEYS[9 + i * 4]
  local b = A.REST + i * J.WIDTH
  local id, model, payload = ARGV[b + J.id], ARGV[b + J.model], ARGV[b + J.payload]
  local deadline, ttl, hash = ARGV[b + J.deadline], ARGV[b + J.ttl], ARGV[b + J.hash]
  local cache_key, cache_ttl = ARGV[b + J.cache_key], ARGV[b + J.cache_ttl]
  local due, traceparent = ARGV[b + J.due], ARGV[b + J.traceparent]
  local tenant, priority = ARGV[b + J.tenant], ARGV[b + J.priority]
  local quota, webhook = tonumber(ARGV[b + J.quota]), ARGV[b + J.webhook]
  local webhook_events = ARGV[b + J.webhook_events]
  local scheduled = due ~= '0' and tonumber(due) > now_n
  local prev = hash ~= '' and redis.call('GET', idem)
  if prev then
    local sep = string.find(prev, ' ', 1, true)
    if string.sub(prev, sep + 1) == hash then
      out[#out + 1] = 'REPLAY ' .. string.sub(prev, 1, sep - 1)
    else
      out[#out + 1] = 'IDEMPOTENCY_REUSED'
    end
  elseif not known(model) then
    out[#out + 1] = 'UNKNOWN_MODEL'
  elseif quota > 0 and active(tenant) >= quota then
    out[#out + 1] = 'QUOTA_EXCEEDED ' .. (active(tenant) - quota + 1)
  elseif not scheduled and limit > 0 and backlog(stream, used) >= limit then
    out[#out + 1] = 'QUEUE_FULL'
  else
    -- The whole record in one HSET; the job is new, so this is its first version. Only what
    -- the job uses is written: no attempts yet (read as 0), no deadline unless it has one,
    -- the tenant unless it is the default one (read as it), `counted` only under a quota.
    -- Listed first: the job's creation time is its index entry's time, so the listing's
    -- order (the entries') and its creation times agree, whichever replica wrote it.
    local listed = redis.call('XADD', KEYS[2], '*', C.index_field, id)
    local rec = {F.model, model, F.created_at, string.match(listed, '^%d+'), F.version, '1',
      F.ttl, ttl}
    if deadline ~= '0' then
      rec[#rec + 1], rec[#rec + 2] = F.deadline, deadline
    end
    if tenant ~= C.default_tenant then
      rec[#rec + 1], rec[#rec + 2] = F.tenant, tenant
    end
    if quota > 0 then
      rec[#rec + 1], rec[#rec + 2] = F.counted, 1
    end
    local entry = ''
    if scheduled then
      rec[#rec + 1], rec[#rec + 2] = F.status, 'scheduled'
      rec[#rec + 1], rec[#rec + 2] = F.due, due
      rec[#rec + 1], rec[#rec + 2] = F.payload, payload
      if traceparent ~= '' then
        rec[#rec + 1], rec[#rec + 2] = F.traceparent, traceparent
      end
      redis.call('ZADD', KEYS[4], due, id)
      entry = 'SCHEDULED'
    else
      local fields = {E.id, id, E.payload, payload}
      if traceparent ~= '' then
        fields[#fields + 1], fields[#fields + 2] = E.traceparent, traceparent
      end
      if priority ~= C.default_priority then
        fields[#fields + 1], fields[#fields + 2] = E.priority, priority
      end
      if fetch_allow ~= '' then
        fields[#fields + 1], fields[#fields + 2] = E.fetch_allow, fetch_allow
      end
      entry = redis.call('XADD', stream, '*', unpack(fields))
      added(stream, used, priority ~= C.default_priority)
      rec[#rec + 1], rec[#rec + 2] = F.status, 'queued'
      rec[#rec + 1], rec[#rec + 2] = F.entry, entry
    end
    if priority ~= C.default_priority then
      rec[#rec + 1], rec[#rec + 2] = F.priority, priority
    end
    if fetch_allow ~= '' then
      rec[#rec + 1], rec[#rec + 2] = F.fetch_allow, fetch_allow
    end
    if webhook ~= '' then
      rec[#rec + 1], rec[#rec + 2] = F.webhook, webhook
      rec[#rec + 1], rec[#rec + 2] = F.webhook_events, webhook_events
      rec[#rec + 1], rec[#rec + 2] = F.webhook_state, 'pending'
      rec[#rec + 1], rec[#rec + 2] = F.webhook_attempts, 0
    end
    if cache_key ~= '' then
      rec[#rec + 1], rec[#rec + 2] = F.cache_key, cache_key
      rec[#rec + 1], rec[#rec + 2] = F.cache_ttl, cache_ttl
    end
    redis.call('HSET', job, unpack(rec))
    if quota > 0 then
      redis.call('HINCRBY', KEYS[5], tenant, 1)
    end
    if hash ~= '' then
      redis.call('SET', idem, id .. ' ' .. hash, 'EX', idem_ttl)
    end
    out[#out + 1] = entry
  end
end
if group ~= '' then
  local ids = {}
  for i = 0, count - 1 do ids[#ids + 1] = ARGV[A.REST + i * J.WIDTH + J.id] end
  redis.call('HSET', KEYS[3], 'created_at', now, 'jobs', table.concat(ids, ' '),
    'tenant', ARGV[A.REST + J.tenant])
  redis.call('EXPIRE', KEYS[3], tonumber(ARGV[A.group_ttl]))
end
return out
