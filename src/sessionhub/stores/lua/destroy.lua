-- Delete a session, take it out of its shard's counts and tell every process to drop its mirror
-- copy. The publish is part of the script so that no destroy reaches Redis without it, and it goes
-- out even when the key is already gone: a mirror may still hold what Redis evicted or lost.
-- A tombstone stays until the session's absolute expiry, so that an instance cut off from Redis
-- when this ran cannot copy the session back on its recovery (put.lua, mode 'newer').
-- KEYS[1] session hash, KEYS[2] shard counts, KEYS[3] tombstone.
-- ARGV: bucket_ms, revocation channel, storage id, remembered bucket_ms (see load.lua).
local x, w = unpack(redis.call('HMGET', KEYS[1], 'x', 'w'))
local e = redis.call('PEXPIRETIME', KEYS[1])
if e > 0 then recount(KEYS[2], bucket(e, tonumber(w and ARGV[4] or ARGV[1])), -1) end
if x then redis.call('SET', KEYS[3], '1', 'PXAT', x) end
local existed = redis.call('DEL', KEYS[1])
redis.call('PUBLISH', ARGV[2], ARGV[3])
return existed
