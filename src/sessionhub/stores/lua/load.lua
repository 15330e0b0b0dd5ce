-- Load a session and slide its idle expiry, in one round trip.
-- KEYS[1] session hash, KEYS[2] its shard's expiry index (same hash tag).
-- ARGV: sid, now_ms, idle_ms, touch (0|1), refresh_threshold_ms
-- Returns the hash as a flat array (with the new e/l), or nil when missing or expired.
local h = redis.call('HGETALL', KEYS[1])
if #h == 0 then
  redis.call('ZREM', KEYS[2], ARGV[1])
  return false
end
local now = tonumber(ARGV[2])
local ei, li, x
for i = 1, #h, 2 do
  local f = h[i]
  if f == 'e' then ei = i + 1 elseif f == 'l' then li = i + 1 elseif f == 'x' then x = tonumber(h[i + 1]) end
end
if not ei or not li or not x or tonumber(h[ei]) <= now then
  redis.call('DEL', KEYS[1])
  redis.call('ZREM', KEYS[2], ARGV[1])
  return false
end
-- A session refreshed within the threshold is not written again: reads stay read-only.
if ARGV[4] == '1' and now - tonumber(h[li]) >= tonumber(ARGV[5]) then
  local e = string.format('%d', math.min(now + tonumber(ARGV[3]), x))
  redis.call('HSET', KEYS[1], 'e', e, 'l', ARGV[2])
  redis.call('PEXPIREAT', KEYS[1], e)
  redis.call('ZADD', KEYS[2], e, ARGV[1])
  h[ei] = e
  h[li] = ARGV[2]
end
return h
