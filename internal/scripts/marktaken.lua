-- Records entries a consumer claimed as taken over by it (taken.lua's
-- markTaken).
--
-- KEYS[1]  the group's takers hash
-- KEYS[2]  the group's takeover times (same hash slot)
-- KEYS[3]  the stream (same hash slot)
-- ARGV[1]  taker: the consumer that claimed them
-- ARGV[2]  how long to remember a takeover, in ms
-- ARGV[3]  group to check the entries in
-- ARGV[4…] entry IDs
--
-- Only the entries still pending for the taker are recorded: a reaper
-- records its claim after XAUTOCLAIM's reply, and an entry acknowledged
-- meanwhile by the consumer it was taken from (which records that it took
-- it back, acklapsed.lua) must keep that record.
local taker, group = ARGV[1], ARGV[3]
local ids = {}
for i = 4, #ARGV do
  local id = ARGV[i]
  local ok, p = pcall(redis.call, 'XPENDING', KEYS[3], group, id, id, 1)
  if ok and #p > 0 and p[1][2] == taker then
    ids[#ids + 1] = id
  end
end
if #ids > 0 then
  markTaken(KEYS[1], KEYS[2], taker, tonumber(ARGV[2]), ids)
end
return #ids
