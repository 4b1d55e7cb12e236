-- Moves one pending entry to the dead-letter stream and acknowledges it, as
-- one atomic step, so that racing reapers dead-letter an entry exactly once.
--
-- KEYS[1]  the stream
-- KEYS[2]  its dead-letter stream (same hash slot)
-- KEYS[3]  the group's failed-attempts hash (same hash slot): the entry's
--          field is deleted with the move
-- KEYS[4]  the group's takers hash (taken.lua; same hash slot)
-- KEYS[5]  the group's takeover times (same hash slot)
-- ARGV[1]  group
-- ARGV[2]  consumer that must own the entry, or "" for any owner
-- ARGV[3]  entry ID
-- ARGV[4]  reason
-- ARGV[5]  last error text
-- ARGV[6]  time, Unix milliseconds
-- ARGV[7]  minimum idle time in ms the entry must have, or -1 for none
-- ARGV[8]  delivery count to record when the entry is no longer pending,
--          or when higher than Redis's
-- ARGV[9]  who moves it: "0" a reaper or an operator, which records the
--          entry as taken over from its consumer (taken.lua), and moves
--          nothing that is not pending; "1" the consumer holding it, which
--          writes it from memory even when it is pending for no one (its
--          group, pending record or stream vanished), unless the group
--          exists and the entry was taken over from this consumer; "2" the
--          same, and not either when the entry's failed-attempts field,
--          which the consumer wrote or read, is gone: another consumer
--          finished it (claimown.lua)
-- ARGV[10] how long to remember a takeover, in ms
-- ARGV[11…] the entry's fields as name, value pairs, from the caller's
--          memory: used only when the entry is gone from the stream
--          (trimmed while its consumer held it), so it is not lost
--
-- Returns {"ok", dead-letter ID}, {"deleted"} (the entry was trimmed away
-- and no fields were given: only cleared from the pending list),
-- {"not-pending"}, {"not-owner"} or {"not-idle"}.
local stream, group, id = KEYS[1], ARGV[1], ARGV[3]
local remembered = #ARGV > 10
local byHolder = ARGV[9] ~= '0'
-- NOGROUP or no such key (the stream was deleted under a consumer that
-- holds the entry in memory): not pending.
local ok, p = pcall(redis.call, 'XPENDING', stream, group, id, id, 1)
if not ok then
  p = {}
elseif #p == 0 and byHolder and takenFrom(KEYS[4], id, ARGV[2]) then
  return {'not-pending'} -- taken over, and finished, by someone else
elseif #p == 0 and ARGV[9] == '2' and redis.call('HEXISTS', KEYS[3], id) == 0 then
  return {'not-pending'} -- finished by another consumer
end
local owner, deliveries = ARGV[2], ARGV[8]
if #p == 1 then
  -- Redis's count, or the caller's attempt count when higher (a count
  -- that reading its own pending entries did not raise).
  owner, deliveries = p[1][2], tostring(math.max(p[1][4], tonumber(ARGV[8])))
  if ARGV[2] ~= '' and owner ~= ARGV[2] then
    return {'not-owner'}
  end
  local minIdle = tonumber(ARGV[7])
  if minIdle >= 0 and p[1][3] < minIdle then
    return {'not-idle'}
  end
elseif not remembered and not byHolder then
  return {'not-pending'}
end
local fields
local e = redis.call('XRANGE', stream, id, id)
if #e == 1 then
  if #p == 0 and not byHolder then
    return {'not-pending'} -- acknowledged by someone else meanwhile
  end
  fields = e[1][2]
elseif remembered then
  fields = {}
  for i = 11, #ARGV do
    fields[#fields + 1] = ARGV[i]
  end
else
  redis.call('XACK', stream, group, id)
  redis.call('HDEL', KEYS[3], id)
  return {'deleted'}
end
local args = {KEYS[2], '*',
  'dead-letter:stream', stream,
  'dead-letter:id', id,
  'dead-letter:group', group,
  'dead-letter:consumer', owner,
  'dead-letter:deliveries', deliveries,
  'dead-letter:reason', ARGV[4],
  'dead-letter:error', ARGV[5],
  'dead-letter:time', ARGV[6]}
-- Lua calls take a few thousand arguments at most: an entry with more
-- fields is recorded without them (it stays in the stream, by its ID).
local limit = 6000
if #fields > limit then
  args[#args + 1] = 'dead-letter:fields-omitted'
  args[#args + 1] = tostring(#fields / 2)
  fields = {}
end
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
if #p == 1 then
  redis.call('XACK', stream, group, id)
  if not byHolder then
    markTaken(KEYS[4], KEYS[5], '', tonumber(ARGV[10]), {id})
  end
end
redis.call('HDEL', KEYS[3], id)
return {'ok', dl}
