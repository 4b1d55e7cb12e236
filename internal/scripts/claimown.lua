-- Renews this consumer's leases: resets the idle time of entries it still
-- owns (XCLAIM to itself, JUSTID), optionally raising their delivery count,
-- and reports the entries it does not own. Checking the owner first means a
-- renewal never takes an entry another consumer has reclaimed; checking the
-- entry exists first matters because XCLAIM drops a deleted entry from the
-- pending list.
--
-- With a release idle time, it does the opposite of a renewal: it marks the
-- entries idle that long (XCLAIM ... IDLE), so that any reaper takes them
-- at once instead of after MinIdle. That hands over entries this consumer
-- will not finish (it is shutting down).
--
-- KEYS[1]  the stream
-- KEYS[2]  the group's failed-attempts hash (same hash slot)
-- KEYS[3]  the group's takers hash (taken.lua; same hash slot)
-- ARGV[1]  group
-- ARGV[2]  consumer
-- ARGV[3]  delivery count to raise to (RETRYCOUNT), or "0" to keep it
-- ARGV[4]  release: idle time in ms to set, or "0" to renew
-- ARGV[5…] entry IDs
--
-- Returns {lost IDs, deleted IDs, vanished IDs, unrecorded IDs}: lost
-- entries are pending for another consumer, or pending for no one after
-- another consumer (or an operator) took them over; deleted ones are gone from the
-- stream (trimmed or XDEL'd) and left as they are, whether still pending
-- for this consumer or pending for no one (a reaper's XAUTOCLAIM, on Redis
-- 7, clears the pending records of deleted entries it meets, however
-- recently delivered); vanished ones are in the stream but pending for no
-- one with a failed attempt recorded (which whoever finishes an entry
-- deletes: so no consumer finished it; its consumer was deleted, or an
-- operator acknowledged it with a bare XACK), or their group or stream is gone;
-- unrecorded ones are in the stream, pending for no one, with no failed
-- attempt recorded: finished by another consumer if the caller had
-- recorded one, else vanished too, for all the caller can tell.
local stream, group, consumer = KEYS[1], ARGV[1], ARGV[2]
local count = tonumber(ARGV[3])
local idle = ARGV[4]
local lost, deleted, vanished, unrecorded = {}, {}, {}, {}
for i = 5, #ARGV do
  local id = ARGV[i]
  -- NOGROUP, or no such key: nothing of the group is left.
  local ok, p = pcall(redis.call, 'XPENDING', stream, group, id, id, 1)
  if not ok then
    vanished[#vanished + 1] = id
  elseif #p == 0 then
    if takenFrom(KEYS[3], id, consumer) then
      lost[#lost + 1] = id
    elseif #redis.call('XRANGE', stream, id, id) == 0 then
      deleted[#deleted + 1] = id
    elseif redis.call('HEXISTS', KEYS[2], id) == 1 then
      vanished[#vanished + 1] = id
    else
      unrecorded[#unrecorded + 1] = id
    end
  elseif p[1][2] ~= consumer then
    lost[#lost + 1] = id
  elseif #redis.call('XRANGE', stream, id, id) == 0 then
    deleted[#deleted + 1] = id
  elseif idle ~= '0' then
    redis.call('XCLAIM', stream, group, consumer, 0, id, 'IDLE', idle, 'JUSTID')
  elseif count > p[1][4] then
    redis.call('XCLAIM', stream, group, consumer, 0, id, 'RETRYCOUNT', count, 'JUSTID')
  else
    redis.call('XCLAIM', stream, group, consumer, 0, id, 'JUSTID')
  end
end
return {lost, deleted, vanished, unrecorded}
