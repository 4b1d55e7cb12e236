-- Stores one message for delivery when due (wrapped by once: a client's
-- resend returns the first run's reply).
-- KEYS[1] the sorted set of schedule IDs by due time (ms, server clock)
-- KEYS[2] the hash of each schedule ID's record
-- ARGV[1] the schedule ID; ARGV[2] the due time in ms, or "" to take the
-- server's time plus ARGV[3] ms; ARGV[4..] the entry's fields, name, value.
-- The record is a list of netstrings ("<length>:<bytes>", binary safe):
-- tag, value pairs of metadata, then the tag "f" and the fields. This
-- script writes no metadata; scheduleretry.lua writes a retry's group
-- ("g"), original entry ID ("o") and failed attempts ("a"), before "f":
-- the mover skips tags it does not know.
local due = tonumber(ARGV[2])
if not due then
  local t = redis.call('TIME')
  due = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(ARGV[3])
end
if redis.call('ZSCORE', KEYS[1], ARGV[1]) then
  return {0, tostring(due)}
end
local rec = {'1:f'}
for i = 4, #ARGV do
  rec[#rec + 1] = #ARGV[i] .. ':' .. ARGV[i]
end
redis.call('HSET', KEYS[2], ARGV[1], table.concat(rec))
redis.call('ZADD', KEYS[1], due, ARGV[1])
return {1, string.format('%d', due)}
