-- Reads new entries of an exclusive partition for a consumer only while it
-- holds the partition's lease, checked and read in one step: a read that
-- reaches Redis after the lease expired (a stalled network, a paused
-- process) delivers nothing.
--
-- KEYS[1]  the stream
-- KEYS[2]  the partition's lease key (same hash slot)
-- ARGV[1]  group
-- ARGV[2]  consumer (the lease's holder)
-- ARGV[3]  most entries to read
--
-- Returns {0} when the consumer does not hold the lease; {1, entries} when
-- it read entries ([id, fields] pairs, as XREADGROUP gives them); {1, {},
-- last} when there was nothing new, last being the stream's last ID then
-- ("0-0" when empty), for the caller to wait on with XREAD.
if redis.call('GET', KEYS[2]) ~= ARGV[2] then
  return {0}
end
local r = redis.call('XREADGROUP', 'GROUP', ARGV[1], ARGV[2], 'COUNT', ARGV[3], 'STREAMS', KEYS[1], '>')
if r and #r[1][2] > 0 then
  return {1, r[1][2]}
end
local top = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
local last = '0-0'
if #top > 0 then
  last = top[1][1]
end
return {1, {}, last}
