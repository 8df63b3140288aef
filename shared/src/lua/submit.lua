-- Enqueue one job: its record and its stream entry are written together or not at all.
--
-- KEYS[1]  job hash
-- KEYS[2]  model stream
-- ARGV[1]  job id
-- ARGV[2]  model name
-- ARGV[3]  now, ms since the epoch
-- ARGV[4]  request payload (the JSON body as submitted)
-- ARGV[5]  most entries the stream may hold (queued plus in flight); 0 = no limit
-- ARGV[6]  deadline to start by, ms since the epoch; 0 = none
--
-- Returns the stream entry id, or false when the queue is full (the caller answers 429).
local limit = tonumber(ARGV[5])
if limit > 0 and redis.call('XLEN', KEYS[2]) >= limit then
  return false
end
local entry = redis.call('XADD', KEYS[2], '*', 'id', ARGV[1], 'p', ARGV[4])
redis.call('HSET', KEYS[1],
  'model', ARGV[2], 'status', 'queued', 'created_at', ARGV[3],
  'attempts', 0, 'entry', entry, 'deadline', ARGV[6])
return entry
