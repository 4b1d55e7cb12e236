-- Renews this consumer's leases: resets the idle time of entries it still
-- owns (XCLAIM to itself, JUSTID), optionally raising their delivery count,
-- and reports the entries it no longer owns and those deleted from the
-- stream. Checking the owner first means a renewal never takes an entry
-- another consumer has reclaimed; checking the entry exists first matters
-- because XCLAIM drops a deleted entry from the pending list.
--
-- KEYS[1]  the stream
-- ARGV[1]  group
-- ARGV[2]  consumer
-- ARGV[3]  delivery count to raise to (RETRYCOUNT), or "0" to keep it
-- ARGV[4…] entry IDs
--
-- Returns {lost IDs, deleted IDs}. Deleted entries are left as they are.
local stream, group, consumer = KEYS[1], ARGV[1], ARGV[2]
local count = tonumber(ARGV[3])
local lost, deleted = {}, {}
for i = 4, #ARGV do
  local id = ARGV[i]
  local p = redis.call('XPENDING', stream, group, id, id, 1)
  if #p == 0 or p[1][2] ~= consumer then
    lost[#lost + 1] = id
  elseif #redis.call('XRANGE', stream, id, id) == 0 then
    deleted[#deleted + 1] = id
  elseif count > p[1][4] then
    redis.call('XCLAIM', stream, group, consumer, 0, id, 'RETRYCOUNT', count, 'JUSTID')
  else
    redis.call('XCLAIM', stream, group, consumer, 0, id, 'JUSTID')
  end
end
return {lost, deleted}
