-- Count a login attempt against two fixed windows, or settle a successful one.
-- KEYS[1] the client address's counter, KEYS[2] the (username, address) counter: one slot.
-- Each is a hash: n (attempts counted), e (window end, ms), l (the lockout was reported).
-- ARGV: now_ms, window_ms, limit of KEYS[1], limit of KEYS[2] (0 = not counted), op.
-- op 'try': when a live window is at its limit, count nothing and return
--   {retry_ms, state1, state2}, state 1 = at the limit, 2 = at the limit and first refused now;
--   else count the attempt in both and return {0, 0, 0}. Counting before the password check
--   keeps concurrent guesses within the limit.
-- op 'ok': the password was right: clear KEYS[2] and take the attempt back from KEYS[1].
local now, window = tonumber(ARGV[1]), tonumber(ARGV[2])
local function live(key)
  local h = redis.call('HMGET', key, 'n', 'e')
  local n, e = tonumber(h[1]) or 0, tonumber(h[2]) or 0
  if e <= now then return 0, 0 end
  return n, e
end
if ARGV[5] == 'ok' then
  redis.call('DEL', KEYS[2])
  if tonumber(ARGV[3]) > 0 and live(KEYS[1]) > 0 then
    redis.call('HINCRBY', KEYS[1], 'n', -1)
  end
  return {0, 0, 0}
end
local out = {0, 0, 0}
for i = 1, 2 do
  local limit = tonumber(ARGV[2 + i])
  local n, e = live(KEYS[i])
  if limit > 0 and n >= limit then
    out[1] = math.max(out[1], e - now)
    out[1 + i] = 1 + redis.call('HSETNX', KEYS[i], 'l', 1)
  end
end
if out[1] > 0 then return out end
for i = 1, 2 do
  if tonumber(ARGV[2 + i]) > 0 then
    if live(KEYS[i]) > 0 then
      redis.call('HINCRBY', KEYS[i], 'n', 1)
    else
      redis.call('DEL', KEYS[i])
      redis.call('HSET', KEYS[i], 'n', 1, 'e', now + window)
      redis.call('PEXPIRE', KEYS[i], window)
    end
  end
end
return out
