-- Write a whole session record (create, or copy a memory session into Redis on recovery).
-- KEYS[1] session hash, KEYS[2] its shard's counts, KEYS[3] its tombstone (see destroy.lua).
-- ARGV: expires_ms, mode ('new' | 'newer'), last_seen_ms, bucket_ms, field, value, ...
-- The idle expiry is the key's expiry time, not a field. Mode 'newer' keeps an existing record
-- that was seen after last_seen_ms, and never brings back a destroyed session.
if ARGV[2] == 'newer' then
  if redis.call('EXISTS', KEYS[3]) == 1 then return 0 end
  local seen = redis.call('HGET', KEYS[1], 'l')
  if seen and tonumber(seen) > tonumber(ARGV[3]) then return 0 end
end
local width = tonumber(ARGV[4])
local old = redis.call('PEXPIRETIME', KEYS[1])
if old > 0 then recount(KEYS[2], bucket(old, width), -1) end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], unpack(ARGV, 5))
redis.call('PEXPIREAT', KEYS[1], ARGV[1])
recount(KEYS[2], bucket(ARGV[1], width), 1)
return 1
