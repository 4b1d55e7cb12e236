-- Claims pending entries for a consumer (XCLAIM … JUSTID: their delivery
-- counts kept, their idle time restarted) and records the takeover
-- (taken.lua's markTaken) in the same step: the consumer they were taken
-- from, should it look again (a stalled one), lets them go. In two steps,
-- a lost reply or a failure between them would leave a claim unrecorded,
-- and the stalled consumer, once the new holder acknowledged the entry,
-- would find it pending for no one and finish it again from memory.
--
-- Only the IDs found pending are claimed: XCLAIM on Valkey creates the
-- consumer even when it claims nothing, and a claim of nothing must change
-- nothing. An entry deleted from the stream while pending is cleared from
-- the pending list by XCLAIM (Redis 7.0 and later) and not returned.
--
-- KEYS[1]  the stream
-- KEYS[2]  the group's takers hash (same hash slot)
-- KEYS[3]  the group's takeover times (same hash slot)
-- ARGV[1]  group
-- ARGV[2]  consumer
-- ARGV[3]  how long to remember a takeover, in ms
-- ARGV[4…] entry IDs
--
-- Returns the IDs claimed.
local stream, group, consumer = KEYS[1], ARGV[1], ARGV[2]
local args = {stream, group, consumer, 0}
for i = 4, #ARGV do
  local id = ARGV[i]
  local ok, p = pcall(redis.call, 'XPENDING', stream, group, id, id, 1)
  if ok and #p > 0 then
    args[#args + 1] = id
  end
end
if #args == 4 then
  return {}
end
args[#args + 1] = 'JUSTID'
local claimed = redis.call('XCLAIM', unpack(args))
if #claimed > 0 then
  markTaken(KEYS[2], KEYS[3], consumer, tonumber(ARGV[3]), claimed)
end
return claimed
