-- Drop from the listing index the jobs whose record expired, walking the index from a given
-- creation time a bounded number of entries at a time.
--
-- KEYS[1]  index of jobs by creation time
-- ARGV[1]  prefix of job hash keys (the job id follows it)
-- ARGV[2]  creation time (ms) to start from
-- ARGV[3]  most entries to look at
--
-- Returns the creation time to start the next sweep from, 0 once the end was reached.
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], ARGV[2], '+inf', 'WITHSCORES', 'LIMIT', 0,
  tonumber(ARGV[3]))
local gone = {}
for i = 1, #ids, 2 do
  if redis.call('EXISTS', ARGV[1] .. ids[i]) == 0 then
    gone[#gone + 1] = ids[i]
  end
end
if #gone > 0 then
  redis.call('ZREM', KEYS[1], unpack(gone))
end
if #ids < 2 * tonumber(ARGV[3]) then
  return 0
end
return tonumber(ids[#ids])
