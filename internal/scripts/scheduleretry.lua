-- Moves a failed entry's retry to the schedule and acknowledges the entry,
-- as one atomic step (wrapped by once: a client's resend returns the first
-- run's reply), so the retry is scheduled exactly when the entry stops
-- being pending: never both (a second handler run), never neither (a lost
-- message). The mover (movedue.lua) appends it again when due, with fields
-- naming the group, the original entry and the failed attempts.
--
-- KEYS[1]  the stream
-- KEYS[2]  the sorted set of schedule IDs by due time (same hash slot)
-- KEYS[3]  the hash of schedule records (same hash slot)
-- KEYS[4]  the group's failed-attempts hash (same hash slot): the entry's
--          field is deleted with the acknowledgement
-- KEYS[5]  the group's takers hash (same hash slot)
-- KEYS[6]  the group's takeover times (same hash slot)
-- ARGV[1]  group
-- ARGV[2]  consumer that must own the entry
-- ARGV[3]  entry ID
-- ARGV[4]  delay in ms, from the server's time
-- ARGV[5]  failed handler attempts, this one included: the record
--          carries the higher of it and the count in KEYS[4]
-- ARGV[6]  schedule ID for the retry
-- ARGV[7]  how long to remember a takeover, in ms
-- ARGV[8]  how long to remember this one, in ms (shorter)
--
-- The entry is recorded as taken by no consumer (taken.lua): a consumer
-- that sent the move and lost every reply keeps the retry in memory, and
-- finding the entry pending for no one, lets it go (the schedule delivers
-- it) instead of running it again from memory. It looks again within
-- MinIdle: the record is kept for ARGV[8] only, not for the hour a
-- takeover is, since long retries can be many.
--
-- Returns {"ok", due ms, attempts carried}, {"not-pending"} (acknowledged
-- or gone meanwhile), {"not-owner"} (another consumer took it) or
-- {"deleted"} (pending but trimmed from the stream: nothing to schedule;
-- left as is).
local stream, group, id = KEYS[1], ARGV[1], ARGV[3]
local ok, p = pcall(redis.call, 'XPENDING', stream, group, id, id, 1)
if not ok or #p == 0 then
  return {'not-pending'}
end
if p[1][2] ~= ARGV[2] then
  return {'not-owner'}
end
local e = redis.call('XRANGE', stream, id, id)
if #e == 0 then
  return {'deleted'}
end
local fields = e[1][2]
-- An entry that is itself a moved retry keeps its first entry's ID; its
-- group and count fields are the mover's to write again.
local origin = id
local rec = {}
for i = 1, #fields, 2 do
  local name = fields[i]
  if name == 'redstream-retry-of' then
    origin = fields[i + 1]
  elseif name ~= 'redstream-retry-group' and name ~= 'redstream-attempts' then
    rec[#rec + 1] = #name .. ':' .. name
    rec[#rec + 1] = #fields[i + 1] .. ':' .. fields[i + 1]
  end
end
local attempts = math.max(tonumber(ARGV[5]), tonumber(redis.call('HGET', KEYS[4], id) or '0') or 0)
local meta = {'g', group, 'o', origin, 'a', string.format('%d', attempts)}
local head = {}
for i = 1, #meta do
  head[#head + 1] = #meta[i] .. ':' .. meta[i]
end
head[#head + 1] = '1:f'
local t = redis.call('TIME')
local due = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(ARGV[4])
redis.call('HSET', KEYS[3], ARGV[6], table.concat(head) .. table.concat(rec))
redis.call('ZADD', KEYS[2], due, ARGV[6])
markTaken(KEYS[5], KEYS[6], '', tonumber(ARGV[7]), {id}, tonumber(ARGV[8]))
redis.call('XACK', stream, group, id)
redis.call('HDEL', KEYS[4], id)
return {'ok', string.format('%d', due), attempts}
