-- The webhook outbox, prepended to every script that changes a job's state: when the job asked
-- for a webhook on `event`, a delivery is written (its hash and its due entry) in the same
-- atomic step as the change, so no process can die between the two and lose it.
--
-- hooks        due deliveries (sorted set: delivery id -> due time, ms)
-- deliveries   the partition's deliveries (hash: `<delivery id>:<field>` -> value, the fields of
--              `fields::hook`), so the caller declares it in KEYS like any key
-- job, id      the job's hash and id; event: started | succeeded | failed | cancelled
--
-- The delivery id (the `webhook-id` header) is `msg_<job id>_<n>`, n counting the job's
-- deliveries, so it is unique and stays the same on every retry of the message.
local function outbox(hooks, deliveries, job, id, event, now)
  local w = redis.call('HMGET', job, F.webhook, F.webhook_events, F.tenant, F.webhook_latest,
    F.fetch_allow)
  if not w[1] then
    return
  end
  if not string.find(w[2] or '', ',' .. event .. ',', 1, true) then
    -- A final state the webhook does not announce: with nothing ever written, nothing is
    -- pending any more (the record then shows no webhook).
    if event ~= 'started' and not w[4] then
      redis.call('HDEL', job, F.webhook_state, F.webhook_attempts)
    end
    return
  end
  local n = redis.call('HINCRBY', job, F.webhook_seq, 1)
  local msg = 'msg_' .. (string.gsub(id, '-', '')) .. '_' .. n
  local f = msg .. ':'
  redis.call('HSET', deliveries, f .. H.job, id, f .. H.event, event, f .. H.url, w[1],
    f .. H.at, now, f .. H.tenant, w[3] or '', f .. H.attempts, 0, f .. H.claim, 0,
    f .. H.fetch_allow, w[5] or '')
  redis.call('ZADD', hooks, now, msg)
  redis.call('HSET', job, F.webhook_state, 'pending', F.webhook_attempts, 0,
    F.webhook_latest, msg)
  redis.call('HDEL', job, F.webhook_last_status, F.webhook_last_error)
end

