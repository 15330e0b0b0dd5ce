-- Load a session and slide its idle expiry, in one round trip.
-- KEYS[1] session hash, KEYS[2] its shard's counts (same hash tag).
-- ARGV: now_ms, idle_ms, touch (0|1), refresh_threshold_ms, bucket_ms, remembered bucket_ms
-- A remembered session (field 'w') slides by its own idle timeout rather than ARGV[2], read in
-- the same call, and is counted in buckets of its own width, so that its longer timeout spreads
-- over as few buckets as any other session's.
-- Returns the hash as a flat array plus 'e', the idle expiry, which is the key's own expiry time
-- rather than a field; nil when missing or expired.
local h = redis.call('HGETALL', KEYS[1])
-- A hash Redis expired needs no recount: its bucket ends by itself.
if #h == 0 then return false end
local now = tonumber(ARGV[1])
local width = tonumber(ARGV[5])
local e = redis.call('PEXPIRETIME', KEYS[1])
local li, x
local idle = tonumber(ARGV[2])
for i = 1, #h, 2 do
  local f = h[i]
  if f == 'l' then li = i + 1
  elseif f == 'x' then x = tonumber(h[i + 1])
  elseif f == 'w' then
    idle = tonumber(h[i + 1])
    width = tonumber(ARGV[6])
  end
end
if not li or not x or e <= now then
  redis.call('DEL', KEYS[1])
  if e > 0 then recount(KEYS[2], bucket(e, width), -1) end
  return false
end
-- A session refreshed within the threshold is not written again: reads stay read-only.
if ARGV[3] == '1' and now - tonumber(h[li]) >= tonumber(ARGV[4]) then
  local slid = math.min(now + idle, x)
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
