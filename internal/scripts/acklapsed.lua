-- Acknowledges entries that may have been taken over from the consumer
-- they were delivered to, recording the takeover in the same step:
--
--   - a consumer's entries finished after its lease on them may have lapsed
--     (it stalled for most of MinIdle): another consumer may have claimed
--     them meanwhile. Those pending for another consumer are recorded as
--     taken back by this one, so that the other, finding them pending for
--     no one, lets them go as finished elsewhere instead of dead-lettering
--     them as vanished;
--   - an operator's acknowledgement (consumer ""): every pending entry is
--     recorded as taken by an operator, so that a consumer still holding
--     one lets it go. One step: a consumer looking between the XACK and
--     the record would find the entry pending for no one, unrecorded, and
--     finish it again from memory.
--
-- Their failed-attempts records are deleted with them, which the other
-- consumer may have written.
--
-- KEYS[1]  the stream
-- KEYS[2]  the group's failed-attempts hash (same hash slot)
-- KEYS[3]  the group's takers hash (same hash slot)
-- KEYS[4]  the group's takeover times (same hash slot)
-- ARGV[1]  group
-- ARGV[2]  consumer, or "" for an operator
-- ARGV[3]  how long to remember a takeover, in ms
-- ARGV[4…] entry IDs
--
-- Returns, per ID in order, 1 when it was pending and is acknowledged, 0
-- when it was not pending.
local stream, group, consumer = KEYS[1], ARGV[1], ARGV[2]
local ids, taken, acked = {}, {}, {}
for i = 4, #ARGV do
  local id = ARGV[i]
  ids[#ids + 1] = id
  local ok, p = pcall(redis.call, 'XPENDING', stream, group, id, id, 1)
  if ok and #p > 0 and p[1][2] ~= consumer then
    taken[#taken + 1] = id
  end
end
if #taken > 0 then
  markTaken(KEYS[3], KEYS[4], consumer, tonumber(ARGV[3]), taken)
end
for i, id in ipairs(ids) do
  acked[i] = redis.call('XACK', stream, group, id)
end
redis.call('HDEL', KEYS[2], unpack(ids))
return acked
