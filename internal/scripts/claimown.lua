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
-- ARGV[1]  group
-- ARGV[2]  consumer
-- ARGV[3]  delivery count to raise to (RETRYCOUNT), or "0" to keep it
-- ARGV[4]  release: idle time in ms to set, or "0" to renew
-- ARGV[5…] entry IDs
--
-- Returns {lost IDs, deleted IDs, vanished IDs}: lost entries are pending
-- for another consumer; deleted ones are still pending for this consumer
-- but gone from the stream (trimmed), and left as they are; vanished ones
-- are not pending at all (acknowledged, or the group, its pending list or
-- the stream itself is gone: deleted, flushed, evicted).
local stream, group, consumer = KEYS[1], ARGV[1], ARGV[2]
local count = tonumber(ARGV[3])
local idle = ARGV[4]
local lost, deleted, vanished = {}, {}, {}
for i = 5, #ARGV do
  local id = ARGV[i]
  -- NOGROUP, or no such key: nothing of the group is left.
  local ok, p = pcall(redis.call, 'XPENDING', stream, group, id, id, 1)
  if not ok or #p == 0 then
    vanished[#vanished + 1] = id
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
return {lost, deleted, vanished}
