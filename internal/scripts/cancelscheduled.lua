-- Cancels one scheduled message (wrapped by once, so that a resend reports
-- what the first run did). KEYS[1] the sorted set, KEYS[2] the records;
-- ARGV[1] the schedule ID. Reply 1: cancelled; 0: not waiting (moved to
-- the stream already, cancelled before, or never scheduled here).
if redis.call('ZREM', KEYS[1], ARGV[1]) == 1 then
  redis.call('HDEL', KEYS[2], ARGV[1])
  return 1
end
return 0
