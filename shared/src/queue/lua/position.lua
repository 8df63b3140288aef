-- Where a waiting job stands: how many entries wait ahead of it (not yet delivered to a
-- worker) in its model's lanes of a higher priority and, older than its entry, in its own
-- lane; and how many jobs of the model finished in the last minute. Aging (which lets a
-- long-waiting lower-priority job pass) is not counted: the figure is what is ahead now.
--
-- KEYS[1]                 the job's lane
-- KEYS[2..A.higher + 1]   the model's lanes of a higher priority
-- KEYS[A.higher + 2..]    the model's per-second counts of finished jobs for the last minute
-- ARGV: the fields of `PositionCall` (listing.rs), in order, named here A.<field>:
-- A.group                 consumer group
-- A.entry                 the job's stream entry id
-- A.limit                 most entries to count
-- A.higher                how many higher lanes there are
--
-- Returns {entries ahead (at most A.limit), jobs finished in the last minute}.
local limit, higher = tonumber(ARGV[A.limit]), tonumber(ARGV[A.higher])

-- The range start just past the group's last delivered entry.
local function undelivered(key)
  local last = '-'
  local groups = redis.pcall('XINFO', 'GROUPS', key)
  if type(groups) == 'table' and not groups.err then
    for _, g in ipairs(groups) do
      local t = {}
      for j = 1, #g, 2 do t[g[j]] = g[j + 1] end
      if t['name'] == ARGV[A.group] then last = '(' .. t['last-delivered-id'] end
    end
  end
  return last
end

local ahead = 0
for i = 2, higher + 1 do
  if ahead >= limit then break end
  if redis.call('EXISTS', KEYS[i]) == 1 then
    ahead = ahead + #redis.call('XRANGE', KEYS[i], undelivered(KEYS[i]), '+', 'COUNT', limit - ahead)
  end
end
if ahead < limit then
  ahead = ahead + #redis.call('XRANGE', KEYS[1], undelivered(KEYS[1]), '(' .. ARGV[A.entry],
    'COUNT', limit - ahead)
end
local done = 0
if #KEYS >= higher + 2 then
  for _, n in ipairs(redis.call('MGET', unpack(KEYS, higher + 2))) do
    done = done + (tonumber(n) or 0)
  end
end
return {ahead, done}
