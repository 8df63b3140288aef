-- Ask a batch to stop: an unfinished batch turns `cancelling` (its jobs are cancelled by the
-- caller after this step; the batch turns `cancelled` once every one of them is final).
--
-- KEYS[1]  batch hash
-- ARGV: the fields of `CancelBatchCall` (batches.rs), in order, named here A.<field>:
-- A.now  now, Unix seconds
--
-- Returns the batch's status after the step, or false for an unknown batch.
local status = redis.call('HGET', KEYS[1], B.status)
if not status then
  return false
end
if status == 'in_progress' or status == 'validating' then
  redis.call('HSET', KEYS[1], B.status, 'cancelling', B.cancelling_at, ARGV[A.now])
  return 'cancelling'
end
return status
