-- Count the live sessions of one shard, pruning a bounded number of expired index entries.
-- KEYS[1] shard index. ARGV: now_ms, prune_limit.
-- ZCOUNT is exact whatever is left to prune, and the bounded prune keeps every call short even
-- right after a mass expiry (pruning a million entries at once blocks Redis for a second).
local dead = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
if #dead > 0 then redis.call('ZREM', KEYS[1], unpack(dead)) end
return redis.call('ZCOUNT', KEYS[1], ARGV[1], '+inf')
