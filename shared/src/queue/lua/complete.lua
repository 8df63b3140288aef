-- Record the outcome of attempts, fenced by their tokens.
--
-- KEYS[1]    model stream
-- KEYS[2]    the model's count of jobs finished in the current second
-- KEYS[3]    list of recent failures
-- KEYS[4]    tenants' active jobs (hash: tenant -> jobs waiting or running)
-- KEYS[5..]  job hashes, one per outcome
-- ARGV[1]    consumer group
-- ARGV[2]    now, ms since the epoch
-- ARGV[3]    seconds a finished job record is kept
-- ARGV[4]    channel of terminal events (one message, one `<id> <status>` line per job)
-- ARGV[5]    model name
-- ARGV[6]    most entries kept in the list of recent failures
-- ARGV[7]    due webhook deliveries (sorted set; see outbox.lua)
-- ARGV[8]    prefix of webhook delivery hash keys
-- then six values per outcome, in KEYS order:
--   job id, stream entry id, fencing token, 'succeeded' | 'failed',
--   result | error code, '' | error message
-- KEYS[5 + n..]  (pipeline streams only) the jobs' upload keys, in the same order, n = the
--                number of outcomes: deleted once the job has ended (recorded here, or ended
--                before); left alone while a newer attempt runs
--
-- Returns one integer per outcome: 1 recorded; 0 discarded because a newer attempt owns the
-- job (its lease expired and another worker reclaimed it) or the job was cancelled meanwhile.
local group, now, ttl, channel = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4]
local model, keep_failures = ARGV[5], tonumber(ARGV[6])
local hooks, hook_prefix = ARGV[7], ARGV[8]
local out, events, failures, acks = {}, {}, 0, {}
local n = (#ARGV - 8) / 6
local uploads = #KEYS > 4 + n
for i = 5, 4 + n do
  local job = KEYS[i]
  local b = 9 + (i - 5) * 6
  local id, entry, token = ARGV[b], ARGV[b + 1], ARGV[b + 2]
  local status, a, c = ARGV[b + 3], ARGV[b + 4], ARGV[b + 5]
  local rec = redis.call('HMGET', job, F.status, F.token, F.ttl, F.cache_key, F.cache_ttl,
    F.version, F.counted, F.tenant, F.webhook)
  local done = 0
  if rec[2] == token then
    if rec[1] == 'running' then
      local version = (tonumber(rec[6]) or 0) + 1
      if status == 'succeeded' then
        redis.call('HSET', job, F.status, status, F.finished_at, now, F.result, a,
          F.version, version)
        if rec[4] then
          redis.call('SET', rec[4], a, 'EX', tonumber(rec[5]))
        end
      else
        redis.call('HSET', job, F.status, status, F.finished_at, now,
          F.error_code, a, F.error_message, c, F.version, version)
        redis.call('LPUSH', KEYS[3], cjson.encode({id = id, model = model, code = a,
          message = c, failed_at = tonumber(now)}))
        failures = failures + 1
      end
      -- The job leaves its tenant's count of active jobs (once: `counted` goes with it).
      if rec[7] and redis.call('HDEL', job, F.counted) == 1 then
        if redis.call('HINCRBY', KEYS[4], rec[8], -1) <= 0 then
          redis.call('HDEL', KEYS[4], rec[8])
        end
      end
      redis.call('EXPIRE', job, tonumber(rec[3]) or ttl)
      events[#events + 1] = id .. ' ' .. status
      if rec[9] then
        outbox(hooks, hook_prefix, job, id, status, now)
      end
      done = 1
    end
    acks[#acks + 1] = entry
  end
  if uploads and (done == 1 or (rec[1] ~= 'running' and rec[1] ~= 'queued')) then
    redis.call('DEL', KEYS[i + n])
  end
  out[#out + 1] = done
end
-- The answered entries are acknowledged and deleted together, a slice at a time (unpack has
-- a limit).
for j = 1, #acks, 1000 do
  local part = {unpack(acks, j, math.min(j + 999, #acks))}
  redis.call('XACK', KEYS[1], group, unpack(part))
  redis.call('XDEL', KEYS[1], unpack(part))
end
if #events > 0 then
  redis.call('PUBLISH', channel, table.concat(events, '\n'))
  redis.call('INCRBY', KEYS[2], #events)
  redis.call('EXPIRE', KEYS[2], 120)
end
if failures > 0 then
  redis.call('LTRIM', KEYS[3], 0, keep_failures - 1)
end
return out
