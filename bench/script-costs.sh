#!/usr/bin/env bash
# What one step inside a Lua script costs Redis: each line times one tiny script, called 60,000
# times by redis-benchmark on one connection against a redis-server of its own, and prints the
# server's own time per call (INFO commandstats, `usec_per_call` of EVALSHA). The first line is
# an empty script; the others less it are what their step costs inside a script.
# docs/benchmarks.md ("What a script's step costs") reads these figures.
#
# Usage: bench/script-costs.sh [calls]   (redis-server, redis-cli, redis-benchmark on PATH)
set -euo pipefail

calls="${1:-60000}"
# shellcheck source=bench/scratch-redis.sh
source "$(dirname "$0")/scratch-redis.sh"

cli() { redis-cli -p "$port" "$@"; }
# A finished small job's record, as the lean protocol leaves it.
cli hset job model mlp_small status succeeded created_at 1796625258000 \
  started_at 1796625258010 finished_at 1796625258020 attempts 1 version 3 \
  worker vm-14378-cf15e0 result "$(head -c 45 /dev/zero | base64)" >/dev/null

# ARGV: 1 a time in ms, 2 a retention in seconds, 3 a small count, 4 a stream entry id.
step() {
  local sha per
  sha="$(cli script load "#!lua
$1
return 1")"
  cli config resetstat >/dev/null
  redis-benchmark -p "$port" -n "$calls" -c 1 -q \
    evalsha "$sha" 1 job 1796625258020 86400 1 1796625258020-3 >/dev/null
  per="$(cli info commandstats | sed -n 's/^cmdstat_evalsha:.*usec_per_call=\([0-9.]*\).*/\1/p')"
  printf '%7s µs  %s\n' "$per" "$2"
}

step "local x = 1" "an empty script (the call itself)"
step "redis.call('EXISTS', KEYS[1])" "EXISTS"
step "redis.call('HMGET', KEYS[1], 'status', 'attempts')" "HMGET of 2 fields"
step "redis.call('HMGET', KEYS[1], 'status', 'attempts', 'ttl', 'cache_key', 'cache_ttl', 'version', 'counted', 'tenant', 'webhook')" "HMGET of 9 fields"
step "redis.call('HSET', KEYS[1], 'started_at', ARGV[1])" "HSET of a time passed as the string it came as"
step "redis.call('HSET', KEYS[1], 'started_at', tonumber(ARGV[1]))" "HSET of the same time as a Lua number"
step "redis.call('EXPIRE', KEYS[1], ARGV[2])" "EXPIRE with the string"
step "redis.call('EXPIRE', KEYS[1], tonumber(ARGV[2]))" "EXPIRE with a Lua number"
step "for i = 1, 10 do local x = tonumber(ARGV[1]) end" "10 x tonumber of a time"
step "for i = 1, 10 do local x = tostring(i) end" "10 x tostring of a small integer"
step "for i = 1, 10 do local ms, seq = string.match(ARGV[4], '^(%d+)-(%d+)\$') end" "10 x splitting an entry id"
step "local v = redis.call('HMGET', KEYS[1], 'model', 'status', 'created_at', 'started_at', 'finished_at', 'attempts', 'result', 'error_code', 'error_message', 'entry', 'cached', 'due', 'tenant', 'progress_done', 'progress_total', 'priority', 'version', 'webhook_state', 'webhook_attempts', 'webhook_last_status', 'webhook_last_error')
local parts = {}
for i = 1, #v do if v[i] then parts[i] = #v[i] .. ':' .. v[i] else parts[i] = '-' end end
local record = table.concat(parts)" "the whole record read and framed for an event (21 fields)"
