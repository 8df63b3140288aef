-- Record the outcome of a webhook delivery attempt, fenced by its claim token, and show it on
-- the job record when the delivery is the job's latest.
--
-- KEYS[1]  due deliveries (sorted set)
-- KEYS[2]  the delivery's hash
-- KEYS[3]  the job's hash
-- ARGV[1]  delivery id
-- ARGV[2]  claim token
-- ARGV[3]  'delivered' | 'retry' | 'failed' (attempts used up)
-- ARGV[4]  when to retry, ms since the epoch (for 'retry')
-- ARGV[5]  HTTP status of the attempt ('' = no answer)
-- ARGV[6]  error of the attempt ('' = none)
-- ARGV[7]  the body sent, kept so that retries send the same ('' = keep what is there)
--
-- Returns 1 when recorded, 0 when the claim was taken over (nothing written).
local rec = redis.call('HMGET', KEYS[2], H.claim, H.attempts)
if rec[1] ~= ARGV[2] then
  return 0
end
if ARGV[3] == 'retry' then
  redis.call('ZADD', KEYS[1], tonumber(ARGV[4]), ARGV[1])
  if ARGV[7] ~= '' then
    redis.call('HSET', KEYS[2], H.body, ARGV[7])
  end
else
  redis.call('DEL', KEYS[2])
  redis.call('ZREM', KEYS[1], ARGV[1])
end
-- A record that expired is not brought back.
if redis.call('HGET', KEYS[3], F.webhook_latest) == ARGV[1] then
  local state = ARGV[3] == 'retry' and 'pending' or ARGV[3]
  redis.call('HSET', KEYS[3], F.webhook_state, state, F.webhook_attempts, rec[2])
  if ARGV[5] ~= '' then
    redis.call('HSET', KEYS[3], F.webhook_last_status, ARGV[5])
  else
    redis.call('HDEL', KEYS[3], F.webhook_last_status)
  end
  if ARGV[6] ~= '' then
    redis.call('HSET', KEYS[3], F.webhook_last_error, ARGV[6])
  else
    redis.call('HDEL', KEYS[3], F.webhook_last_error)
  end
end
return 1
