-- The taken record (taken.go): which entries of a group were taken over
-- from the consumer they were delivered to, and by whom, in the last
-- while. A hash of entry ID to taker ("" for an operator or a reaper that
-- is no consumer) and a sorted set of entry ID by time taken, to forget
-- old takeovers.

-- takenFrom reports whether id was taken over from consumer: recorded as
-- taken by someone else. A consumer that took an entry over itself is its
-- holder, not the one it was taken from.
local function takenFrom(takers, id, consumer)
  local by = redis.call('HGET', takers, id)
  return by ~= false and by ~= consumer
end

-- markTaken records ids as taken over by taker now and forgets takeovers
-- older than keepMs. With lifeMs (shorter than keepMs), these records are
-- forgotten sooner: after lifeMs (they are dated back by keepMs - lifeMs).
local function markTaken(takers, ages, taker, keepMs, ids, lifeMs)
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  local at = now
  if lifeMs and lifeMs < keepMs then
    at = now - keepMs + lifeMs
  end
  for _, id in ipairs(ids) do
    redis.call('ZADD', ages, at, id)
    redis.call('HSET', takers, id, taker)
  end
  local old = redis.call('ZRANGEBYSCORE', ages, '-inf', '(' .. (now - keepMs), 'LIMIT', 0, 1000)
  if #old > 0 then
    redis.call('ZREM', ages, unpack(old))
    redis.call('HDEL', takers, unpack(old))
  end
  redis.call('PEXPIRE', takers, keepMs)
  redis.call('PEXPIRE', ages, keepMs)
end
