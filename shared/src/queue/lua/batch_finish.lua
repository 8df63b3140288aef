-- End a batch: the finalizer that holds the lease (`batch_finalize.lua`) writes the final
-- status, its time, the counts and the ids of the output and error files it stored.
--
-- KEYS[1]  batch hash
-- ARGV: the fields of `FinishCall` (batches.rs), in order, named here A.<field>:
-- A.token     the lease's token
-- A.now       now, Unix seconds
-- A.counts    `<total> <completed> <failed>`
-- A.tokens    prompt tokens of the succeeded requests
-- A.output    output file id ('' = none)
-- A.errors    error file id ('' = none)
--
-- Returns the final status, or false when the lease is no longer this finalizer's.
local rec = redis.call('HMGET', KEYS[1], B.status, B.lease, B.ending)
if rec[1] ~= 'finalizing' or rec[2] ~= ARGV[A.token] then
  return false
end
local ending = rec[3]
local at = B.completed_at
if ending == 'cancelled' then
  at = B.cancelled_at
elseif ending == 'expired' then
  at = B.expired_at
end
redis.call('HSET', KEYS[1], B.status, ending, at, ARGV[A.now], B.counts, ARGV[A.counts],
  B.tokens, ARGV[A.tokens])
if ARGV[A.output] ~= '' then
  redis.call('HSET', KEYS[1], B.output_file_id, ARGV[A.output])
end
if ARGV[A.errors] ~= '' then
  redis.call('HSET', KEYS[1], B.error_file_id, ARGV[A.errors])
end
redis.call('HDEL', KEYS[1], B.lease)
return ending
