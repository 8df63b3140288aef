#!/usr/bin/env bash
# What a pending webhook delivery costs Redis in memory, in the two shapes its fields have been
# kept in: a field per delivery field (`<delivery id>:<field>`, the release before) and one
# packed field per delivery (`<delivery id>:job` -> msgpack array, shared/src/queue/lua/outbox.lua),
# each with its entry in the due set. Writes N deliveries of a typical job (a 36-byte job id, a
# 31-byte URL, the default tenant, no body yet) into a redis-server of its own and prints the
# growth of `used_memory` per delivery. docs/benchmarks.md ("A pending webhook delivery") reads
# these figures.
#
# Usage: bench/delivery-memory.sh [deliveries]   (redis-server and redis-cli on PATH)
set -euo pipefail

n="${1:-100000}"
# shellcheck source=bench/scratch-redis.sh
source "$(dirname "$0")/scratch-redis.sh"

cat > "$dir/write.lua" <<'LUA'
local n, packed = tonumber(ARGV[1]), ARGV[2] == '1'
for i = 1, n do
  local id = 'msg_' .. string.format('%032x', i) .. '_1'
  local job = string.format('%08x-aaaa-4bbb-8ccc-%012x', i, i)
  local url, at = 'http://hooks.example.com/inferq', '1765100000000'
  if packed then
    redis.call('HSET', KEYS[1], id .. ':job',
      cmsgpack.pack({job, 'succeeded', url, at, 'default', 0, 0, '', ''}))
  else
    local f = id .. ':'
    redis.call('HSET', KEYS[1], f .. 'job', job, f .. 'event', 'succeeded', f .. 'url', url,
      f .. 'at', at, f .. 'tenant', 'default', f .. 'attempts', 0, f .. 'claim', 0,
      f .. 'fetch_allow', '')
  end
  redis.call('ZADD', KEYS[2], 1765100000000, id)
end
return n
LUA
used() { redis-cli -p "$port" info memory | sed -n 's/^used_memory:\([0-9]*\).*/\1/p'; }
for shape in 0 1; do
  redis-cli -p "$port" flushall >/dev/null
  before="$(used)"
  redis-cli -p "$port" --eval "$dir/write.lua" '{ns}:deliveries' '{ns}:hooks' , "$n" "$shape" >/dev/null
  after="$(used)"
  name=$([ "$shape" = 1 ] && echo "one packed field" || echo "a field per field")
  printf '%-18s %5d B per pending delivery (%d deliveries)\n' "$name" $(( (after - before) / n )) "$n"
done
