-- Appends the scheduled messages that are due to the stream, in due
-- order, at most ARGV[1] of them, each exactly once: a message is removed
-- from the schedule in the same script that appends it, so racing movers
-- (and a client's resend) never move it twice. Due is judged by the
-- server's clock, the one that stamps the entry's ID, so no entry's ID is
-- below its due time.
-- KEYS[1] the sorted set of schedule IDs by due time
-- KEYS[2] the hash of records
-- KEYS[3] the stream
-- Reply: {moved, taken, next}: entries appended, schedule IDs taken off
-- (moved or without a record), and the due time in ms of the next
-- message still waiting ("" if none).
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'WITHSCORES', 'LIMIT', 0, tonumber(ARGV[1]))
local moved = 0
for i = 1, #due, 2 do
  local id, score = due[i], due[i + 1]
  local rec = redis.call('HGET', KEYS[2], id)
  if rec then
    local args, meta = recordFields(rec)
    if meta.g then
      -- A retry (scheduleretry.lua): its group's consumers handle it,
      -- counting the attempts so far; other groups acknowledge it. It
      -- keeps the schedule fields of its first entry, if any.
      args[#args + 1] = 'redstream-retry-group'
      args[#args + 1] = meta.g
      args[#args + 1] = 'redstream-retry-of'
      args[#args + 1] = meta.o
      args[#args + 1] = 'redstream-attempts'
      args[#args + 1] = meta.a
    else
      args[#args + 1] = 'redstream-schedule-id'
      args[#args + 1] = id
      args[#args + 1] = 'redstream-due'
      args[#args + 1] = string.format('%d', tonumber(score))
    end
    redis.call('XADD', KEYS[3], '*', unpack(args))
    moved = moved + 1
  end
  redis.call('ZREM', KEYS[1], id)
  redis.call('HDEL', KEYS[2], id)
end
local nxt = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
local nextDue = ''
if #nxt == 2 then
  nextDue = string.format('%d', tonumber(nxt[2]))
end
return {moved, #due / 2, nextDue}
