-- Delete a session and take it out of its shard's counts.
-- KEYS[1] session hash, KEYS[2] shard counts. ARGV: bucket_ms.
local e = redis.call('PEXPIRETIME', KEYS[1])
if e > 0 then recount(KEYS[2], bucket(e, tonumber(ARGV[1])), -1) end
return redis.call('DEL', KEYS[1])
