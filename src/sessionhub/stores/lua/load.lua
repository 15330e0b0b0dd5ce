-- Load a session and slide its idle expiry, in one round trip.
-- KEYS[1] session hash, KEYS[2] its shard's counts (same hash tag).
-- ARGV: now_ms, idle_ms, touch (0|1), refresh_threshold_ms, bucket_ms
-- Returns the hash as a flat array (with the new e/l), or nil when missing or expired.
local h = redis.call('HGETALL', KEYS[1])
-- A hash Redis expired needs no recount: its bucket ends by itself.
if #h == 0 then return false end
local now = tonumber(ARGV[1])
local width = tonumber(ARGV[5])
local ei, li, x
for i = 1, #h, 2 do
  local f = h[i]
  if f == 'e' then ei = i + 1 elseif f == 'l' then li = i + 1 elseif f == 'x' then x = tonumber(h[i + 1]) end
end
if not ei or not li or not x or tonumber(h[ei]) <= now then
  redis.call('DEL', KEYS[1])
  if ei then recount(KEYS[2], h[ei], width, -1) end
  return false
end
-- A session refreshed within the threshold is not written again: reads stay read-only.
if ARGV[3] == '1' and now - tonumber(h[li]) >= tonumber(ARGV[4]) then
  local e = string.format('%d', math.min(now + tonumber(ARGV[2]), x))
  redis.call('HSET', KEYS[1], 'e', e, 'l', ARGV[1])
  redis.call('PEXPIREAT', KEYS[1], e)
  if bucket(e, width) ~= bucket(h[ei], width) then
    recount(KEYS[2], h[ei], width, -1)
    recount(KEYS[2], e, width, 1)
  end
  h[ei] = e
  h[li] = ARGV[1]
end
return h
