-- Session counts of one shard: P{n}:cnt is a hash of bucket end (ms) -> the number of sessions
-- whose idle expiry falls in (end - width, end]. A count costs nothing per session, and a
-- session moves to another bucket only when a slide crosses a bucket boundary.
local function bucket(e, width)
  return string.format('%d', math.ceil(tonumber(e) / width) * width)
end
local function recount(key, f, delta)
  if redis.call('HINCRBY', key, f, delta) <= 0 then redis.call('HDEL', key, f) end
end
