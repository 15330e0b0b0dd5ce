-- Rewrite a stream's entries with new bodies, keeping ids, expiry and the last generated id,
-- only if its newest entry and length are still what was read (no message arrived meanwhile).
-- KEYS[1] the stream. ARGV: length read, newest id read, then (id, field, value) triples of the
-- new body field of each entry. Returns 1 when written, 0 when the stream changed first.
local key = KEYS[1]
if redis.call('XLEN', key) ~= tonumber(ARGV[1]) then return 0 end
local newest = redis.call('XREVRANGE', key, '+', '-', 'COUNT', 1)[1]
if newest == nil or newest[1] ~= ARGV[2] then return 0 end
local new = {}
for i = 3, #ARGV, 3 do new[ARGV[i]] = {ARGV[i + 1], ARGV[i + 2]} end
local last = redis.call('XINFO', 'STREAM', key)
local last_id
for j = 1, #last, 2 do
  if last[j] == 'last-generated-id' then last_id = last[j + 1] end
end
local ttl = redis.call('PTTL', key)
local entries = redis.call('XRANGE', key, '-', '+')
redis.call('DEL', key)
for _, entry in ipairs(entries) do
  local id, fields = entry[1], entry[2]
  local change = new[id]
  if change then
    for j = 1, #fields, 2 do
      if fields[j] == change[1] then fields[j + 1] = change[2] end
    end
  end
  redis.call('XADD', key, id, unpack(fields))
end
redis.call('XSETID', key, last_id)
if ttl > 0 then redis.call('PEXPIRE', key, ttl) end
return 1
