-- Renews this consumer's leases: resets the idle time of entries it still
-- owns (XCLAIM to itself, JUSTID), optionally setting their delivery count,
-- and reports the entries it no longer owns. Checking the owner first means
-- a renewal never takes an entry another consumer has reclaimed.
--
-- KEYS[1]  the stream
-- ARGV[1]  group
-- ARGV[2]  consumer
-- ARGV[3]  delivery count to set (RETRYCOUNT), or "0" to keep it
-- ARGV[4…] entry IDs
--
-- Returns the IDs that are no longer pending for this consumer.
local stream, group, consumer, count = KEYS[1], ARGV[1], ARGV[2], ARGV[3]
local lost = {}
for i = 4, #ARGV do
  local id = ARGV[i]
  local p = redis.call('XPENDING', stream, group, id, id, 1)
  if #p == 0 or p[1][2] ~= consumer then
    lost[#lost + 1] = id
  elseif count ~= '0' then
    redis.call('XCLAIM', stream, group, consumer, 0, id, 'RETRYCOUNT', count, 'JUSTID')
  else
    redis.call('XCLAIM', stream, group, consumer, 0, id, 'JUSTID')
  end
end
return lost
