-- Record the outcome of a webhook delivery attempt, fenced by its claim token, and show it on
-- the job record when the delivery is the job's latest.
--
-- KEYS[1]  due deliveries (sorted set)
-- KEYS[2]  the deliveries' hash (`<delivery id>:<field>`, see outbox.lua)
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
local d, f = KEYS[2], ARGV[A.id] .. ':'
local rec = redis.call('HMGET', d, f .. H.claim, f .. H.attempts)
if rec[1] ~= ARGV[A.claim] then
  return 0
end
if ARGV[A.state] == 'retry' then
  redis.call('ZADD', KEYS[1], tonumber(ARGV[A.retry_at]), ARGV[A.id])
  if ARGV[A.body] ~= '' then
    redis.call('HSET', d, f .. H.body, ARGV[A.body])
  end
else
  -- Every field of a delivery (`fields::hook::ALL`).
  local fields = {}
  for _, name in ipairs({H.job, H.event, H.url, H.at, H.tenant, H.attempts, H.claim, H.body,
    H.fetch_allow}) do
    fields[#fields + 1] = f .. name
  end
  redis.call('HDEL', d, unpack(fields))
  redis.call('ZREM', KEYS[1], ARGV[A.id])
end
-- A record that expired is not brought back.
if redis.call('HGET', KEYS[3], F.webhook_latest) == ARGV[A.id] then
  local state = ARGV[A.state] == 'retry' and 'pending' or ARGV[A.state]
  redis.call('HSET', KEYS[3], F.webhook_state, state, F.webhook_attempts, rec[2])
  if ARGV[A.status] ~= '' then
    redis.call('HSET', KEYS[3], F.webhook_last_status, ARGV[A.status])
  else
    redis.call('HDEL', KEYS[3], F.webhook_last_status)
  end
  if ARGV[A.error] ~= '' then
    redis.call('HSET', KEYS[3], F.webhook_last_error, ARGV[A.error])
  else
    redis.call('HDEL', KEYS[3], F.webhook_last_error)
  end
end
return 1
