-- The webhook outbox, prepended to every script that changes a job's state: when the job asked
-- for a webhook on `event`, a delivery is written (its hash and its due entry) in the same
-- atomic step as the change, so no process can die between the two and lose it.
--
-- hooks        due deliveries (sorted set: delivery id -> due time, ms)
-- hook_prefix  prefix of delivery hash keys (the delivery id follows); it shares the namespace's
--              hash tag, so the key is in the calling script's Cluster slot
-- job, id      the job's hash and id; event: started | succeeded | failed | cancelled
--
-- The delivery id (the `webhook-id` header) is `msg_<job id>_<n>`, n counting the job's
-- deliveries, so it is unique and stays the same on every retry of the message.
local function outbox(hooks, hook_prefix, job, id, event, now)
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
  redis.call('HSET', hook_prefix .. msg, H.job, id, H.event, event, H.url, w[1], H.at, now,
    H.tenant, w[3] or '', H.attempts, 0, H.claim, 0, H.fetch_allow, w[5] or '')
  redis.call('ZADD', hooks, now, msg)
  redis.call('HSET', job, F.webhook_state, 'pending', F.webhook_attempts, 0,
    F.webhook_latest, msg)
  redis.call('HDEL', job, F.webhook_last_status, F.webhook_last_error)
end

