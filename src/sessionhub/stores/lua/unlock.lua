-- Release a session lock only if it is still the caller's: one that outlived its ttl and was
-- taken by another request is not the caller's to delete.
-- KEYS[1] lock key. ARGV: the token the caller locked with.
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
