-- The webhook outbox, prepended to every script that changes a job's state (and to the
-- deliverer's claim and settle): when the job asked for a webhook on `event`, a delivery is
-- written (its fields and its due entry) in the same atomic step as the change, so no process
-- can die between the two and lose it.
--
-- hooks        due deliveries (sorted set: delivery id -> due time, ms)
-- deliveries   the partition's deliveries (one hash, so the caller declares it in KEYS like any
--              key): each delivery is ONE field, `<delivery id>:job`, whose value is the
--              delivery's fields (`fields::hook`, in that order) packed as a msgpack array
--              (`hook_pack`). A field per delivery field took about three times the memory
--              (docs/protocol.md). The name is the one an older release kept the job id under:
--              an older deliverer that meets a packed delivery finds it, cannot read it, and
--              leaves it to its lease (a newer deliverer then delivers it) rather than dropping it.
-- job, id      the job's hash and id; event: started | succeeded | failed | cancelled
--
-- The delivery id (the `webhook-id` header) is `msg_<job id>_<n>`, n counting the job's
-- deliveries, so it is unique and stays the same on every retry of the message.

-- A delivery (a table by `H.` name) as its packed value.
local function hook_pack(t)
  return cmsgpack.pack({t[H.job] or '', t[H.event] or '', t[H.url] or '', t[H.at] or '',
    t[H.tenant] or '', tonumber(t[H.attempts]) or 0, tonumber(t[H.claim]) or 0,
    t[H.body] or '', t[H.fetch_allow] or ''})
end

-- Whether a stored value is a packed delivery (a msgpack array of nine; a job id, which an
-- older release stored under the same name, is text).
local function hook_packed(v)
  return string.byte(v, 1) == 0x99
end

-- A packed delivery as a table by `H.` name.
local function hook_unpack(v)
  local a = cmsgpack.unpack(v)
  return {[H.job] = a[1], [H.event] = a[2], [H.url] = a[3], [H.at] = a[4], [H.tenant] = a[5],
    [H.attempts] = a[6], [H.claim] = a[7], [H.body] = a[8], [H.fetch_allow] = a[9]}
end

local function outbox(hooks, deliveries, job, id, event, now)
  local w = redis.call('HMGET', job, F.webhook, F.webhook_events, F.tenant, F.webhook_latest,
    F.fetch_allow, F.webhook_seq, F.webhook_last_status, F.webhook_last_error)
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
  -- The job's count of deliveries, and the latest outcome's fields (cleared for the new
  -- delivery) only when an earlier delivery left them: no command for what is not there.
  local n = tostring((tonumber(w[6]) or 0) + 1)
  local msg = 'msg_' .. (string.gsub(id, '-', '')) .. '_' .. n
  redis.call('HSET', deliveries, msg .. ':' .. H.job, hook_pack({[H.job] = id, [H.event] = event,
    [H.url] = w[1], [H.at] = now, [H.tenant] = w[3], [H.fetch_allow] = w[5]}))
  redis.call('ZADD', hooks, now, msg)
  redis.call('HSET', job, F.webhook_state, 'pending', F.webhook_attempts, '0',
    F.webhook_latest, msg, F.webhook_seq, n)
  if w[7] or w[8] then
    redis.call('HDEL', job, F.webhook_last_status, F.webhook_last_error)
  end
end

