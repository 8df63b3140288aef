-- Take the lease of a batch's last step (rendering its output and error files): a batch whose
-- jobs are all final turns `finalizing`, held by one finalizer at a time. A finalizer that
-- died is taken over once its lease has passed, so the step is done even then; its late
-- outcome is refused by `batch_finish.lua`, which checks the token.
--
-- KEYS[1]  batch hash
-- ARGV: the fields of `FinalizeCall` (batches.rs), in order, named here A.<field>:
-- A.now_ms   now, ms since the epoch
-- A.now      now, Unix seconds
-- A.lease    how long the lease lasts, ms
-- A.ending   the status to end in when the batch is `in_progress` (`completed` or `expired`);
--            a `cancelling` batch ends `cancelled`
--
-- Returns the lease's token (its expiry, ms) or false when another finalizer holds it or the
-- batch is final (or unknown).
local rec = redis.call('HMGET', KEYS[1], B.status, B.lease, B.ending)
local status, lease, ending = rec[1], tonumber(rec[2]) or 0, rec[3]
local now_ms = tonumber(ARGV[A.now_ms])
if status == 'in_progress' then
  ending = ARGV[A.ending]
elseif status == 'cancelling' then
  ending = 'cancelled'
elseif not (status == 'finalizing' and lease < now_ms) then
  return false
end
local token = now_ms + tonumber(ARGV[A.lease])
if token <= lease then
  token = lease + 1
end
redis.call('HSET', KEYS[1], B.status, 'finalizing', B.lease, token, B.ending, ending)
redis.call('HSETNX', KEYS[1], B.finalizing_at, ARGV[A.now])
return tostring(token)
