-- Moves one pending entry to the dead-letter stream and acknowledges it, as
-- one atomic step, so that racing reapers dead-letter an entry exactly once.
--
-- KEYS[1]  the stream
-- KEYS[2]  its dead-letter stream (same hash slot)
-- ARGV[1]  group
-- ARGV[2]  consumer that must own the entry, or "" for any owner
-- ARGV[3]  entry ID
-- ARGV[4]  reason
-- ARGV[5]  last error text
-- ARGV[6]  time, Unix milliseconds
-- ARGV[7]  minimum idle time in ms the entry must have, or -1 for none
--
-- Returns {"ok", dead-letter ID}, {"deleted"} (the entry was trimmed away:
-- only cleared from the pending list), {"not-pending"}, {"not-owner"} or
-- {"not-idle"}.
local stream, group, id = KEYS[1], ARGV[1], ARGV[3]
local p = redis.call('XPENDING', stream, group, id, id, 1)
if #p == 0 then
  return {'not-pending'}
end
local owner, idle, deliveries = p[1][2], p[1][3], p[1][4]
if ARGV[2] ~= '' and owner ~= ARGV[2] then
  return {'not-owner'}
end
local minIdle = tonumber(ARGV[7])
if minIdle >= 0 and idle < minIdle then
  return {'not-idle'}
end
local e = redis.call('XRANGE', stream, id, id)
if #e == 0 then
  redis.call('XACK', stream, group, id)
  return {'deleted'}
end
local args = {KEYS[2], '*',
  'dead-letter:stream', stream,
  'dead-letter:id', id,
  'dead-letter:group', group,
  'dead-letter:consumer', owner,
  'dead-letter:deliveries', tostring(deliveries),
  'dead-letter:reason', ARGV[4],
  'dead-letter:error', ARGV[5],
  'dead-letter:time', ARGV[6]}
local fields = e[1][2]
for i = 1, #fields, 2 do
  local name = fields[i]
  -- Original fields that look like metadata are escaped, never lost.
  if string.sub(name, 1, 12) == 'dead-letter:' then
    name = 'dead-letter:field:' .. name
  end
  args[#args + 1] = name
  args[#args + 1] = fields[i + 1]
end
local dl = redis.call('XADD', unpack(args))
redis.call('XACK', stream, group, id)
return {'ok', dl}
