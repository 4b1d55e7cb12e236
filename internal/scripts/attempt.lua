-- Records a failed handler attempt: raises an entry's field in the
-- failed-attempts hash to the given count, never lowering it, and renews
-- the hash's expiry. Setting a count rather than adding one makes the
-- script idempotent: a client that sends it again after a lost reply does
-- not count the failure twice.
--
-- KEYS[1]  the failed-attempts hash of a stream's group
-- ARGV[1]  entry ID
-- ARGV[2]  failed attempts, counting this one
-- ARGV[3]  the hash's time to live, in ms
--
-- Returns the count recorded (the higher of the stored and given ones).
local n = tonumber(ARGV[2])
local cur = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0')
if n > cur then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
  cur = n
end
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return cur
