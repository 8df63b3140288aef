-- Renew a worker's leases: reset the idle time of the entries it still owns, so that
-- XAUTOCLAIM leaves them alone however long inference takes. Entries another worker has
-- reclaimed meanwhile are left to that worker.
--
-- KEYS[1]    model stream
-- ARGV[1]    consumer group
-- ARGV[2]    consumer (worker) name
-- ARGV[3..]  stream entry ids
--
-- Returns how many leases were renewed.
local renewed = 0
for i = 3, #ARGV do
  local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1, ARGV[2])
  if #p > 0 then
    redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[i], 'JUSTID')
    renewed = renewed + 1
  end
end
return renewed
