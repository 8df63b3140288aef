-- Where a waiting job stands: how many entries of its model's stream wait ahead of it (not yet
-- delivered to a worker, older than its entry), and how many jobs of the model finished in the
-- last minute.
--
-- KEYS[1]     model stream
-- KEYS[2..]   the model's per-second counts of finished jobs for the last minute
-- ARGV[1]     consumer group
-- ARGV[2]     the job's stream entry id
-- ARGV[3]     most entries to count
--
-- Returns {entries ahead (at most ARGV[3]), jobs finished in the last minute}.
local last = '-'
local groups = redis.pcall('XINFO', 'GROUPS', KEYS[1])
if type(groups) == 'table' and not groups.err then
  for _, g in ipairs(groups) do
    local t = {}
    for j = 1, #g, 2 do t[g[j]] = g[j + 1] end
    if t['name'] == ARGV[1] then last = '(' .. t['last-delivered-id'] end
  end
end
local ahead = 0
local entries = redis.call('XRANGE', KEYS[1], last, '(' .. ARGV[2], 'COUNT', tonumber(ARGV[3]))
ahead = #entries
local done = 0
for i = 2, #KEYS do
  done = done + (tonumber(redis.call('GET', KEYS[i])) or 0)
end
return {ahead, done}
