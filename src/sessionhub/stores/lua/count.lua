-- The sessions of one shard whose bucket has not ended, dropping a bounded number of ended ones.
-- KEYS[1] shard counts. ARGV: now_ms, prune_limit.
-- A session that idled out is counted until its bucket ends: at most one bucket width late.
-- Returns {live, expired}: expired sums the ended buckets dropped now, the sessions that idled
-- out since; HDEL makes that count each of them once, whichever process asks.
local now = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
local h = redis.call('HGETALL', KEYS[1])
local live, expired, dead = 0, 0, {}
for i = 1, #h, 2 do
  if tonumber(h[i]) > now then
    live = live + tonumber(h[i + 1])
  elseif #dead < limit then
    dead[#dead + 1] = h[i]
    expired = expired + tonumber(h[i + 1])
  end
end
if #dead > 0 then redis.call('HDEL', KEYS[1], unpack(dead)) end
return {live, expired}
