-- Delete a session and its index entry. KEYS[1] session hash, KEYS[2] shard index. ARGV: sid.
redis.call('ZREM', KEYS[2], ARGV[1])
return redis.call('DEL', KEYS[1])
