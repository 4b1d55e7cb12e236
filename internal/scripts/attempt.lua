-- Records a failed handler attempt: raises an entry's field in the
-- failed-attempts hash to the given count, never lowering it, and renews
-- the hash's expiry. Setting a count rather than adding one makes the
-- script idempotent: a client that sends it again after a lost reply does
-- not count the failure twice.
--
-- The count is written only while the entry is pending in the group. A
-- consumer that finishes an entry (acknowledges or dead-letters it)
-- deletes its field; a late failure of a consumer whose lease lapsed meanwhile
-- must not write it again, or the entry would look never finished
-- (claimown.lua, deadletter.lua).
--
-- KEYS[1]  the failed-attempts hash of a stream's group
-- KEYS[2]  the stream (same hash slot)
-- ARGV[1]  entry ID
-- ARGV[2]  failed attempts, counting this one
-- ARGV[3]  the hash's time to live, in ms
-- ARGV[4]  group
--
-- Returns the count recorded (the higher of the stored and given ones), or
-- -1 when the entry is not pending (or the group is gone): nothing written.
local ok, p = pcall(redis.call, 'XPENDING', KEYS[2], ARGV[4], ARGV[1], ARGV[1], 1)
if not ok or #p == 0 then
  return -1
end
local n = tonumber(ARGV[2])
local cur = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0')
if n > cur then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
  cur = n
end
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return cur
