-- Change one data field atomically, so concurrent requests lose no update.
-- 'incr' adds to a JSON number and 'append' appends an element (JSON, encoded by the caller) to
-- a JSON list, in place, when the value is the plain compact JSON SessionHub writes (a list is
-- '[...]' with no spaces around it). A value this script cannot read (sealed: compressed or
-- encrypted, behind the 0x1e mark), or a result longer than the limit (it must be compressed),
-- is left as it is and returned in a table: the caller changes it itself and writes it back with
-- 'swap', which writes only if the field still holds what the caller read.
-- KEYS[1] session hash. ARGV: field, 'incr' | 'append' | 'swap', amount | element | new value,
-- channel, message, limit in bytes (0: none; -1: change nothing, only read) | expected value
-- ('' when the field was absent).
-- Returns the new value; {current value} when nothing was written; nil when the session does
-- not exist.
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
local cur = redis.call('HGET', KEYS[1], ARGV[1])
local new
if ARGV[2] == 'swap' then
  if (cur or '') ~= ARGV[6] then return {cur} end
  new = ARGV[3]
else
  local limit = tonumber(ARGV[6])
  if limit < 0 or (cur and string.byte(cur, 1) == 30) then return {cur} end
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
  if limit > 0 and #new > limit then return {cur} end
end
redis.call('HSET', KEYS[1], ARGV[1], new)
redis.call('PUBLISH', ARGV[4], ARGV[5])
return new
