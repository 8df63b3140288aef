-- Renew a worker's leases: reset the idle time of the entries it still owns, so that
-- XAUTOCLAIM leaves them alone however long inference takes. Entries another worker has
-- reclaimed meanwhile are left to that worker.
--
-- KEYS[1]    model stream
-- ARGV (`HeartbeatCall` in scripts/attempts.rs):
-- A.group     consumer group
-- A.consumer  consumer (worker) name
-- then the stream entry ids, from A.REST
--
-- Returns how many leases were renewed.
local renewed = 0
local group, consumer = ARGV[A.group], ARGV[A.consumer]
for i = A.REST, #ARGV do
  local p = redis.call('XPENDING', KEYS[1], group, ARGV[i], ARGV[i], 1, consumer)
  if #p > 0 then
    redis.call('XCLAIM', KEYS[1], group, consumer, 0, ARGV[i], 'JUSTID')
    renewed = renewed + 1
  end
end
return renewed
