-- Drop from the listing index the entries of jobs whose record expired, walking the index
-- (a stream, oldest first) a bounded number of entries at a time.
--
-- KEYS[1]  listing index (stream; each entry's A.field holds its job id)
-- ARGV (`SweepCall` in listing.rs):
-- A.job_prefix  prefix of job hash keys (the job id follows it)
-- A.from        where to start: '-' (the oldest entry) or '(<entry id>' (after that entry)
-- A.count       most entries to look at
-- A.field       the entry field holding the job id
--
-- Returns {the id of the last entry looked at, where the next sweep goes on from ('' once the
-- end was reached: the next sweep starts over), how many entries were dropped}.
local count = tonumber(ARGV[A.count])
local entries = redis.call('XRANGE', KEYS[1], ARGV[A.from], '+', 'COUNT', count)
local gone = {}
for _, e in ipairs(entries) do
  local id
  for i = 1, #e[2], 2 do
    if e[2][i] == ARGV[A.field] then id = e[2][i + 1] end
  end
  if not id or redis.call('EXISTS', ARGV[A.job_prefix] .. id) == 0 then
    gone[#gone + 1] = e[1]
  end
end
for i = 1, #gone, 1000 do
  redis.call('XDEL', KEYS[1], unpack(gone, i, math.min(i + 999, #gone)))
end
if #entries < count then
  return {'', #gone}
end
return {entries[#entries][1], #gone}
