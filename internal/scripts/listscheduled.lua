-- Lists scheduled messages in due order, read only. KEYS[1] the sorted
-- set, KEYS[2] the records; ARGV[1] the rank to start at, ARGV[2] the rank
-- to stop at (-1: the last), both as given: a Lua number would lose an
-- int64's digits.
-- Reply: a flat array of {id, due ms, {name, value, ...}} triples; a
-- schedule ID without a record has an empty field list.
local ids = redis.call('ZRANGE', KEYS[1], ARGV[1], ARGV[2], 'WITHSCORES')
local out = {}
for i = 1, #ids, 2 do
  local rec = redis.call('HGET', KEYS[2], ids[i])
  local f = {}
  if rec then
    f = recordFields(rec)
  end
  out[#out + 1] = ids[i]
  out[#out + 1] = string.format('%d', tonumber(ids[i + 1]))
  out[#out + 1] = f
end
return out
