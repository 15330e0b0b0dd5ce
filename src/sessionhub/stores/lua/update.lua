-- Write only the data fields that changed, and only into a session that still exists, so a
-- concurrent logout is never undone and concurrent writers of different keys both persist.
-- Every process caching the session drops its copy on the message (the writer keeps its own).
-- KEYS[1] session hash. ARGV: channel, message, n_delete, field_to_delete * n, field, value, ...
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local n = tonumber(ARGV[3])
if n > 0 then redis.call('HDEL', KEYS[1], unpack(ARGV, 4, n + 3)) end
if #ARGV > n + 3 then redis.call('HSET', KEYS[1], unpack(ARGV, n + 4)) end
redis.call('PUBLISH', ARGV[1], ARGV[2])
return 1
