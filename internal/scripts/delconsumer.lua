-- Deletes a consumer from its group only if it holds no pending entries,
-- checked and deleted in one step so no entry is lost with it.
--
-- KEYS[1]  the stream
-- ARGV[1]  group
-- ARGV[2]  consumer
--
-- Returns 1 when the consumer was deleted, 0 when it holds entries (or
-- does not exist).
local p = redis.call('XPENDING', KEYS[1], ARGV[1], '-', '+', 1, ARGV[2])
if #p > 0 then
  return 0
end
redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], ARGV[2])
return 1
