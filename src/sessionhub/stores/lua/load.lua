-- Load a session and slide its idle expiry, in one round trip.
-- KEYS[1] session hash, KEYS[2] its shard's counts (same hash tag).
-- ARGV: now_ms, idle_ms, touch (0|1), refresh_threshold_ms, bucket_ms
-- Returns the hash as a flat array plus 'e', the idle expiry, which is the key's own expiry time
-- rather than a field; nil when missing or expired.
local h = redis.call('HGETALL', KEYS[1])
-- A hash Redis expired needs no recount: its bucket ends by itself.
if #h == 0 then return false end
local now = tonumber(ARGV[1])
local width = tonumber(ARGV[5])
local e = redis.call('PEXPIRETIME', KEYS[1])
local li, x
for i = 1, #h, 2 do
  local f = h[i]
  if f == 'l' then li = i + 1 elseif f == 'x' then x = tonumber(h[i + 1]) end
end
if not li or not x or e <= now then
  redis.call('DEL', KEYS[1])
  if e > 0 then recount(KEYS[2], bucket(e, width), -1) end
  return false
end
-- A session refreshed within the threshold is not written again: reads stay read-only.
if ARGV[3] == '1' and now - tonumber(h[li]) >= tonumber(ARGV[4]) then
  local slid = math.min(now + tonumber(ARGV[2]), x)
  redis.call('HSET', KEYS[1], 'l', ARGV[1])
  redis.call('PEXPIREAT', KEYS[1], string.format('%d', slid))
  local from, to = bucket(e, width), bucket(slid, width)
  if from ~= to then
    recount(KEYS[2], from, -1)
    recount(KEYS[2], to, 1)
  end
  e = slid
  h[li] = ARGV[1]
end
h[#h + 1] = 'e'
h[#h + 1] = string.format('%d', e)
return h
