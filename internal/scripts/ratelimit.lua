-- Grants one handler start under a group-wide rate limit: at most burst
-- starts in any window of the given length, on the Redis server's clock
-- (a sliding log of grant times in a sorted set), unless the group is held
-- back (a handler reported that its downstream pushes back).
--
-- KEYS[1]  the grants' sorted set (member: a unique grant, score: its time
--          in microseconds)
-- KEYS[2]  the hold key; while it exists nothing is granted
-- ARGV[1]  window, in microseconds
-- ARGV[2]  burst: the most grants in any window
-- ARGV[3]  this grant's member (the same member sent again is one grant)
--
-- Returns {1, 0, time} when granted (time: the grant's, in microseconds
-- on the server's clock), {0, wait} when not: wait is how many
-- milliseconds until a grant can be made (at least 1).
local hold = redis.call('PTTL', KEYS[2])
if hold > 0 then
  return {0, hold}
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local window = tonumber(ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local granted = redis.call('ZSCORE', KEYS[1], ARGV[3])
if granted then
  return {1, 0, tonumber(granted)}
end
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[2]) then
  redis.call('ZADD', KEYS[1], now, ARGV[3])
  redis.call('PEXPIRE', KEYS[1], math.ceil(window / 1000) + 1000)
  return {1, 0, now}
end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
local wait = math.ceil((tonumber(oldest[2]) + window - now) / 1000)
if wait < 1 then
  wait = 1
end
return {0, wait}
