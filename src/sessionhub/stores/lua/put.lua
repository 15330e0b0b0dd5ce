-- Write a whole session record (create, or copy a memory session into Redis on recovery).
-- KEYS[1] session hash, KEYS[2] its shard's expiry index.
-- ARGV: sid, expires_ms, now_ms, mode ('new' | 'newer'), last_seen_ms, field, value, ...
-- mode 'newer' keeps an existing record that was seen after last_seen_ms.
if ARGV[4] == 'newer' then
  local seen = redis.call('HGET', KEYS[1], 'l')
  if seen and tonumber(seen) > tonumber(ARGV[5]) then return 0 end
end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], unpack(ARGV, 6))
redis.call('PEXPIREAT', KEYS[1], ARGV[2])
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
-- Prune a few expired entries of this shard, so the index never outgrows the live sessions for
-- long; bounded, so a create never pays for a mass expiry.
local dead = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', '(' .. ARGV[3], 'LIMIT', 0, 16)
if #dead > 0 then redis.call('ZREM', KEYS[2], unpack(dead)) end
return 1
