-- Record the outcome of a webhook delivery attempt, fenced by its claim token, and show it on
-- the job record when the delivery is the job's latest.
--
-- KEYS[1]  due deliveries (sorted set)
-- KEYS[2]  the deliveries' hash (one packed field per delivery, see outbox.lua)
-- KEYS[3]  the job's hash
-- ARGV: the fields of `DoneCall` (hooks.rs), in order, named here A.<field>:
-- A.id        delivery id
-- A.claim     claim token
-- A.state     'delivered' | 'retry' | 'failed' (attempts used up)
-- A.retry_at  when to retry, ms since the epoch (for 'retry')
-- A.status    HTTP status of the attempt ('' = no answer)
-- A.error     error of the attempt ('' = none)
-- A.body      the body sent, kept so that retries send the same ('' = keep what is there)
--
-- Returns 1 when recorded, 0 when the claim was taken over (nothing written).
local d, name = KEYS[2], ARGV[A.id] .. ':' .. H.job
local packed = redis.call('HGET', d, name)
-- Gone, or not packed: a claim packs the delivery it takes, so another claim took it over.
if not packed or not hook_packed(packed) then
  return 0
end
local t = hook_unpack(packed)
if tostring(t[H.claim]) ~= ARGV[A.claim] then
  return 0
end
local attempts = tostring(t[H.attempts])
if ARGV[A.state] == 'retry' then
  redis.call('ZADD', KEYS[1], tonumber(ARGV[A.retry_at]), ARGV[A.id])
  if ARGV[A.body] ~= '' then
    t[H.body] = ARGV[A.body]
    redis.call('HSET', d, name, hook_pack(t))
  end
else
  redis.call('HDEL', d, name)
  redis.call('ZREM', KEYS[1], ARGV[A.id])
end
-- A record that expired is not brought back.
-- One write and at most one removal for the record's fields.
local latest = redis.call('HMGET', KEYS[3], F.webhook_latest, F.webhook_last_status,
  F.webhook_last_error)
if latest[1] == ARGV[A.id] then
  local state = ARGV[A.state] == 'retry' and 'pending' or ARGV[A.state]
  local set = {F.webhook_state, state, F.webhook_attempts, attempts}
  local gone = {}
  if ARGV[A.status] ~= '' then
    set[#set + 1], set[#set + 2] = F.webhook_last_status, ARGV[A.status]
  elseif latest[2] then
    gone[#gone + 1] = F.webhook_last_status
  end
  if ARGV[A.error] ~= '' then
    set[#set + 1], set[#set + 2] = F.webhook_last_error, ARGV[A.error]
  elseif latest[3] then
    gone[#gone + 1] = F.webhook_last_error
  end
  redis.call('HSET', KEYS[3], unpack(set))
  if #gone > 0 then
    redis.call('HDEL', KEYS[3], unpack(gone))
  end
end
return 1
