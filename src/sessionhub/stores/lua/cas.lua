-- Compare-and-set a string: write ARGV[2] only if the key still holds ARGV[1] ('' = missing).
-- KEYS[1] the key. Returns 1 when written, 0 when someone else wrote first.
local current = redis.call('GET', KEYS[1])
if (current or '') ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2])
return 1
