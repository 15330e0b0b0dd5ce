-- Mark inbox messages read. KEYS[1] read-state hash (field 'upto'), KEYS[2] set of ids read
-- individually after 'upto'. ARGV: ttl_ms, up_to ('' = unchanged), id, id, ...
-- Everything up to 'upto' is read; the set only holds ids beyond it. Returns the new 'upto'.
local function parse(id)
  local ms, seq = string.match(id, '^(%d+)-(%d+)$')
  if not ms then return nil end
  return tonumber(ms), tonumber(seq)
end
local function gt(a, b)
  local am, as = parse(a)
  local bm, bs = parse(b)
  if not am or not bm then return false end
  if am ~= bm then return am > bm end
  return as > bs
end
local upto = redis.call('HGET', KEYS[1], 'upto') or '0-0'
if ARGV[2] ~= '' and parse(ARGV[2]) and gt(ARGV[2], upto) then
  upto = ARGV[2]
  redis.call('HSET', KEYS[1], 'upto', upto)
end
for i = 3, #ARGV do
  if parse(ARGV[i]) and gt(ARGV[i], upto) then redis.call('SADD', KEYS[2], ARGV[i]) end
end
for _, id in ipairs(redis.call('SMEMBERS', KEYS[2])) do
  if not gt(id, upto) then redis.call('SREM', KEYS[2], id) end
end
redis.call('PEXPIRE', KEYS[1], ARGV[1])
if redis.call('EXISTS', KEYS[2]) == 1 then redis.call('PEXPIRE', KEYS[2], ARGV[1]) end
return upto
