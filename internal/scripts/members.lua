-- A member set: the consumers of a group that share a registration's
-- partitions. KEYS[1]: the set. ARGV[1]: this consumer. ARGV[2]: how long
-- its announcement lasts, in milliseconds. Scores are expiry times on the
-- server's clock, so consumers' clocks do not matter. Returns the live
-- members.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[2])
redis.call('ZADD', KEYS[1], now + ttl, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. now)
redis.call('PEXPIRE', KEYS[1], 10 * ttl)
return redis.call('ZRANGE', KEYS[1], 0, -1)
