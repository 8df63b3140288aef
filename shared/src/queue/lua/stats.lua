-- Read-only figures of model streams, for operators and autoscalers.
--
-- KEYS[1..]  model streams
-- ARGV (`StatsCall` in ops.rs):
-- A.group    consumer group
--
-- Returns per stream {length, pending, id of the oldest entry not yet delivered or ''}.
-- Acknowledged entries are deleted, so length - pending is the number waiting.
local out = {}
for i, key in ipairs(KEYS) do
  local len = redis.call('XLEN', key)
  local pending, last = 0, nil
  local groups = redis.pcall('XINFO', 'GROUPS', key)
  if type(groups) == 'table' and not groups.err then
    for _, g in ipairs(groups) do
      local t = {}
      for j = 1, #g, 2 do t[g[j]] = g[j + 1] end
      if t['name'] == ARGV[A.group] then
        pending, last = t['pending'], t['last-delivered-id']
      end
    end
  end
  local first
  if last then
    first = redis.call('XRANGE', key, '(' .. last, '+', 'COUNT', 1)
  else
    first = redis.call('XRANGE', key, '-', '+', 'COUNT', 1)
  end
  out[i] = {len, pending, first[1] and first[1][1] or ''}
end
return out
