-- Records entries as taken over (taken.lua's markTaken).
--
-- KEYS[1]  the group's takers hash
-- KEYS[2]  the group's takeover times (same hash slot)
-- ARGV[1]  taker: the consumer that took them, or "" for an operator
-- ARGV[2]  how long to remember a takeover, in ms
-- ARGV[3…] entry IDs
local ids = {}
for i = 3, #ARGV do
  ids[#ids + 1] = ARGV[i]
end
markTaken(KEYS[1], KEYS[2], ARGV[1], tonumber(ARGV[2]), ids)
return #ids
