-- Drop from the listing index the jobs whose record expired, walking the index from a given
-- creation time a bounded number of entries at a time.
--
-- KEYS[1]  index of jobs by creation time
-- ARGV (`SweepCall` in listing.rs):
-- A.job_prefix  prefix of job hash keys (the job id follows it)
-- A.from        creation time (ms) to start from
-- A.count       most entries to look at
--
-- Returns the creation time to start the next sweep from, 0 once the end was reached. The next
-- sweep starts at the last creation time seen (its ties are looked at again), so a step that
-- sees a single creation time looks at all of its ties and moves past it: a run of jobs sharing
-- one creation time longer than a step (a bulk submission) cannot hold the sweep in place.
local count = tonumber(ARGV[A.count])
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], ARGV[A.from], '+inf', 'WITHSCORES', 'LIMIT', 0,
  count)
local full = #ids == 2 * count
local last = ids[#ids]
if full and ids[2] == last then
  ids = redis.call('ZRANGEBYSCORE', KEYS[1], last, last, 'WITHSCORES')
end
local gone = {}
for i = 1, #ids, 2 do
  if redis.call('EXISTS', ARGV[A.job_prefix] .. ids[i]) == 0 then
    gone[#gone + 1] = ids[i]
  end
end
for i = 1, #gone, 1000 do
  redis.call('ZREM', KEYS[1], unpack(gone, i, math.min(i + 999, #gone)))
end
if not full then
  return 0
end
if ids[2] == last then
  return tonumber(last) + 1
end
return tonumber(last)
