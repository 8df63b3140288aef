-- Remove consumers that left the group long ago: no pending entries and idle for longer than a
-- threshold. Each worker run joins under a new name, so without this the group's consumer list
-- would grow with every restart and scale-down.
--
-- KEYS[1]  model stream
-- ARGV (`PruneCall` in registry.rs):
-- A.group    consumer group
-- A.idle_ms  idle time, in ms, past which an empty consumer is removed
--
-- Returns how many consumers were removed.
local removed = 0
local ok, consumers = pcall(redis.call, 'XINFO', 'CONSUMERS', KEYS[1], ARGV[A.group])
if not ok then
  return 0
end
for _, c in ipairs(consumers) do
  local info = {}
  for i = 1, #c, 2 do
    info[c[i]] = c[i + 1]
  end
  if tonumber(info['pending']) == 0 and tonumber(info['idle']) > tonumber(ARGV[A.idle_ms]) then
    redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[A.group], info['name'])
    removed = removed + 1
  end
end
return removed
