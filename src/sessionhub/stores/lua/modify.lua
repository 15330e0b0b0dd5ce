-- Change one data field in place, atomically, so concurrent requests lose no update: add to a
-- JSON number, or append an element (JSON, encoded by the caller) to a JSON list. Values are
-- the compact JSON SessionHub writes, so a list is '[...]' with no spaces around it.
-- KEYS[1] session hash. ARGV: field, 'incr' | 'append', amount | element, channel, message.
-- Returns the new value; nil when the session does not exist.
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
local cur = redis.call('HGET', KEYS[1], ARGV[1])
local new
if ARGV[2] == 'incr' then
  local n = 0
  if cur then
    n = tonumber(cur)
    if not n or not string.match(cur, '^[-0-9]') then
      return redis.error_reply('ERR session value is not a number')
    end
  end
  n = n + tonumber(ARGV[3])
  -- Integers stay integers (exact up to 2^53, Lua's doubles).
  if n == math.floor(n) and math.abs(n) < 2 ^ 53 then
    new = string.format('%d', n)
  else
    new = string.format('%.17g', n)
  end
elseif not cur or cur == '[]' then
  new = '[' .. ARGV[3] .. ']'
elseif string.sub(cur, 1, 1) == '[' and string.sub(cur, -1) == ']' then
  new = string.sub(cur, 1, -2) .. ',' .. ARGV[3] .. ']'
else
  return redis.error_reply('ERR session value is not a list')
end
redis.call('HSET', KEYS[1], ARGV[1], new)
redis.call('PUBLISH', ARGV[4], ARGV[5])
return new
