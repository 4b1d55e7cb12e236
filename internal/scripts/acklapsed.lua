-- Acknowledges entries a consumer finished after its lease on them may have
-- lapsed (it stalled longer than about half of MinIdle): another consumer
-- may have taken them over meanwhile. Those pending for another consumer
-- are recorded as taken back by this one (taken.lua), so that the other,
-- finding them pending for no one, lets them go as finished elsewhere
-- instead of dead-lettering them as vanished; and their failed-attempts
-- records are deleted, which the other may have written.
--
-- KEYS[1]  the stream
-- KEYS[2]  the group's failed-attempts hash (same hash slot)
-- KEYS[3]  the group's takers hash (same hash slot)
-- KEYS[4]  the group's takeover times (same hash slot)
-- ARGV[1]  group
-- ARGV[2]  consumer
-- ARGV[3]  how long to remember a takeover, in ms
-- ARGV[4…] entry IDs
--
-- Returns XACK's reply: how many entries were pending.
local stream, group, consumer = KEYS[1], ARGV[1], ARGV[2]
local ids, taken = {}, {}
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
local n = redis.call('XACK', stream, group, unpack(ids))
redis.call('HDEL', KEYS[2], unpack(ids))
return n
