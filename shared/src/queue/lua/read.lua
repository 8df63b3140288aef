-- Read new entries of one queue across its priority lanes, without blocking: lanes are taken in
-- the order of their oldest waiting entry's rank, highest first, until `count` entries are read.
-- An entry's rank is its lane's priority plus one for every aging period it has waited (its
-- entry id holds the time it was queued), so a steady flow of higher-priority jobs delays
-- lower ones but cannot starve them; equal ranks go to the older entry. Only the default lane
-- and the lanes in the queue's used-lanes set are looked at: every step that adds an entry to
-- another lane lists that lane there.
--
-- KEYS[1..n]  the queue's lanes, highest priority first (consecutive priorities)
-- KEYS[n+1]   the queue's used-lanes set (its lanes other than the default that ever held an
--             entry)
-- ARGV: the fields of `ReadCall` (queue/mod.rs), in order, named here A.<field>:
-- A.group             consumer group
-- A.consumer          consumer (worker) name
-- A.count             most entries to read
-- A.now               now, ms since the epoch
-- A.aging             aging period in ms (0 = strict priority, no aging)
-- A.top               priority of KEYS[1]
-- A.default_priority  the default priority
--
-- Returns {lane index (1-based, KEYS order), entries as XREADGROUP gives them, ...}.
local group, consumer = ARGV[A.group], ARGV[A.consumer]
local count, now, aging = tonumber(ARGV[A.count]), tonumber(ARGV[A.now]), tonumber(ARGV[A.aging])
local top, default = tonumber(ARGV[A.top]), tonumber(ARGV[A.default_priority])
local lanes = #KEYS - 1

local used = {}
if lanes > 1 or top ~= default then
  for _, key in ipairs(redis.call('SMEMBERS', KEYS[lanes + 1])) do used[key] = true end
end
local candidates = {}
for i = 1, lanes do
  local key = KEYS[i]
  if (top - (i - 1) == default or used[key]) and redis.call('XLEN', key) > 0 then
    candidates[#candidates + 1] = {lane = i}
  end
end

-- The oldest entry not yet delivered to the group, or nil.
local function head(key)
  local from = '-'
  local groups = redis.pcall('XINFO', 'GROUPS', key)
  if type(groups) == 'table' and not groups.err then
    for _, g in ipairs(groups) do
      local t = {}
      for j = 1, #g, 2 do t[g[j]] = g[j + 1] end
      if t['name'] == group then from = '(' .. t['last-delivered-id'] end
    end
  end
  local e = redis.call('XRANGE', key, from, '+', 'COUNT', 1)
  return e[1] and e[1][1]
end

if #candidates > 1 then
  local ranked = {}
  for _, c in ipairs(candidates) do
    local id = head(KEYS[c.lane])
    if id then
      local queued = tonumber(string.match(id, '^(%d+)')) or now
      c.queued = queued
      c.rank = top - (c.lane - 1)
      if aging > 0 and now > queued then
        c.rank = c.rank + math.floor((now - queued) / aging)
      end
      ranked[#ranked + 1] = c
    end
  end
  table.sort(ranked, function(a, b)
    if a.rank ~= b.rank then return a.rank > b.rank end
    return a.queued < b.queued
  end)
  candidates = ranked
end

local out = {}
for _, c in ipairs(candidates) do
  if count <= 0 then break end
  local got = redis.pcall('XREADGROUP', 'GROUP', group, consumer, 'COUNT', count,
    'STREAMS', KEYS[c.lane], '>')
  if type(got) == 'table' and not got.err and got[1] then
    local entries = got[1][2]
    if #entries > 0 then
      out[#out + 1] = c.lane
      out[#out + 1] = entries
      count = count - #entries
    end
  end
end
return out
