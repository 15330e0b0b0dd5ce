-- Write only the data fields that changed, and only into a session that still exists, so a
-- concurrent logout is never undone and concurrent writers of different keys both persist.
-- KEYS[1] session hash. ARGV: n_delete, field_to_delete * n, field, value, ...
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local n = tonumber(ARGV[1])
if n > 0 then redis.call('HDEL', KEYS[1], unpack(ARGV, 2, n + 1)) end
if #ARGV > n + 1 then redis.call('HSET', KEYS[1], unpack(ARGV, n + 2)) end
return 1
