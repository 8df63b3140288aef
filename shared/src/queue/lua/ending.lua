-- The end of a job, prepended (after the outbox) to every script that ends jobs, so what a job
-- that turns succeeded, failed or cancelled owes is written once:
-- - it leaves its tenant's count of active jobs, if it was counted (once: `counted` goes with
--   it), and the fields only a live job needs (entry, delivery, retention, deadline) go;
-- - its record expires after the job's own retention (the `ttl` written at submission), or the
--   caller's default for a record that has none;
-- - its upload (pipeline jobs) is deleted;
-- - its webhook, if it has one, gets the event (the outbox);
-- - its `<id> <status>` line joins the one message of terminal events the call publishes, and
--   with a `done` key the model's count of jobs finished in the current second counts it;
-- - a failure, when the caller records it, joins the list of recent failures.
--
-- `ending(c)` is called once per script call, with what is the same for all its jobs:
--   c.now          ms since the epoch
--   c.ttl          seconds a finished record is kept when it names no `ttl` of its own
-- (both as the strings the caller got them as: see start.lua on numbers)
--   c.publish      the command events go out with: PUBLISH, or on a cluster SPUBLISH (a
--                  shard channel of the call's partition: queue/events.rs)
--   c.channel      channel of terminal events
--   c.active       tenants' active jobs (hash: tenant -> jobs waiting or running)
--   c.hooks        due webhook deliveries; c.deliveries: the deliveries' hash (outbox)
--   c.done         (optional) the model's count of jobs finished in the current second
--   c.failures     (optional) list of recent failures, with c.keep_failures (most entries kept)
--                  and c.model (the model named in its entries)
-- It returns `job(...)` for each job that ends, `failure(...)` for each failure to list, and
-- `flush()`, called once after the last job: the per-call writes (one message, one count, one
-- trim) are made there, not per job.
local function ending(c)
  local lines, failed = {}, 0
  local e = {}

  -- Job `id` (hash `job`) ended with `status`; `counted`, `tenant`, `ttl` and `webhook` are
  -- its record's fields of those names (as read by the caller); `upload` its upload key, or
  -- nil.
  function e.job(job, id, status, counted, tenant, ttl, webhook, upload)
    if counted and redis.call('HDEL', job, F.counted) == 1 then
      tenant = tenant or C.default_tenant
      if redis.call('HINCRBY', c.active, tenant, -1) <= 0 then
        redis.call('HDEL', c.active, tenant)
      end
    end
    -- What only a live job needs goes: a finished record keeps what clients read.
    redis.call('HDEL', job, F.entry, F.delivery, F.ttl, F.deadline)
    redis.call('EXPIRE', job, ttl or c.ttl)
    if upload then
      redis.call('DEL', upload)
    end
    lines[#lines + 1] = id .. ' ' .. status
    if webhook then
      outbox(c.hooks, c.deliveries, job, id, status, c.now)
    end
  end

  -- Job `id` failed with `code` and `message`: listed among the recent failures.
  function e.failure(id, code, message)
    redis.call('LPUSH', c.failures, cjson.encode({id = id, model = c.model, code = code,
      message = message, failed_at = tonumber(c.now)}))
    failed = failed + 1
  end

  function e.flush()
    if #lines > 0 then
      redis.call(c.publish, c.channel, table.concat(lines, '\n'))
      -- The second's count gets its expiry when this call created it.
      if c.done and redis.call('INCRBY', c.done, #lines) == #lines then
        redis.call('EXPIRE', c.done, '120')
      end
    end
    if failed > 0 then
      redis.call('LTRIM', c.failures, 0, c.keep_failures - 1)
    end
  end

  return e
end
