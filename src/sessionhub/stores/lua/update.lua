-- Write only the data fields that changed, and only into a session that still exists, so a
-- concurrent logout is never undone and concurrent writers of different keys both persist.
-- Every process caching the session drops its copy on the message (the writer keeps its own).
-- KEYS[1] session hash, KEYS[2] its shard's counts (same hash tag).
-- ARGV: channel, message, expires_ms ('' keeps the expiry), bucket_ms, n_delete,
-- field_to_delete * n, field, value, ...
-- A new expiry is the application's own (Django's set_expiry): set as given, even in the past,
-- where Redis drops the session at once.
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local n = tonumber(ARGV[5])
if n > 0 then redis.call('HDEL', KEYS[1], unpack(ARGV, 6, n + 5)) end
if #ARGV > n + 5 then redis.call('HSET', KEYS[1], unpack(ARGV, n + 6)) end
if ARGV[3] ~= '' then
  local width = tonumber(ARGV[4])
  local from = bucket(redis.call('PEXPIRETIME', KEYS[1]), width)
  redis.call('PEXPIREAT', KEYS[1], ARGV[3])
  local to = bucket(ARGV[3], width)
  if from ~= to then
    recount(KEYS[2], from, -1)
    recount(KEYS[2], to, 1)
  end
end
redis.call('PUBLISH', ARGV[1], ARGV[2])
return 1
