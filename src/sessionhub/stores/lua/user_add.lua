-- Add sessions to a user's index, drop the entries that have passed their absolute expiry, and
-- keep the key as long as its newest session. One call rather than three commands: the create
-- round trip carries it, and every reply costs the client more than the script costs Redis.
-- KEYS[1] the user's sorted set. ARGV: now_s, expire_at_ms, score, sid, score, sid, ...
redis.call('ZADD', KEYS[1], unpack(ARGV, 3))
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[1])
redis.call('PEXPIREAT', KEYS[1], ARGV[2])
return 1
