-- Replace fields of a session hash only if the fields read still hold what was read, so a write
-- made since (a save, a logout) is never overwritten with an older value.
-- KEYS[1] the session. ARGV: n, then n (field, value read); m, then m (field, new value); then
-- the fields to delete. Returns 1 when written, 0 when something changed first.
local n = tonumber(ARGV[1])
local i = 2
for _ = 1, n do
  if redis.call('HGET', KEYS[1], ARGV[i]) ~= ARGV[i + 1] then return 0 end
  i = i + 2
end
local m = tonumber(ARGV[i])
i = i + 1
local pairs_ = {}
for _ = 1, m do
  pairs_[#pairs_ + 1] = ARGV[i]
  pairs_[#pairs_ + 1] = ARGV[i + 1]
  i = i + 2
end
if #pairs_ > 0 then redis.call('HSET', KEYS[1], unpack(pairs_)) end
for j = i, #ARGV do redis.call('HDEL', KEYS[1], ARGV[j]) end
return 1
