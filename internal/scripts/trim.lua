-- Trims a stream by policy without removing what a consumer group still
-- needs, computing that bound and trimming in one atomic step.
--
-- A group needs every entry from the lower of its oldest pending ID and the
-- ID just after its last-delivered ID (none after the greatest ID, so a
-- group delivered up to it needs nothing more). The safe bound is the
-- lowest of those over all groups (none when the stream has no groups).
--
-- KEYS[1]  the stream
-- ARGV[1]  max length: keep about this many newest entries; 0 for none
-- ARGV[2]  age bound: remove entries with IDs below it; "" for none
-- ARGV[3]  "1" to let the policy remove entries a group still needs
-- ARGV[4]  most entries a max-length trim removes in one call
--
-- With neither policy, it removes every entry all groups have consumed.
-- Returns {removed, dropped, bound, more}: dropped counts removed entries a
-- group still needed (only with ARGV[3] = "1"); bound is the MINID used
-- ("" when nothing was trimmed, "+" when the bound is past the greatest
-- ID, so every entry was removed); more is 1 when a max-length trim hit the
-- per-call limit.
local key = KEYS[1]
local maxlen, ageBound, allow, cap = tonumber(ARGV[1]), ARGV[2], ARGV[3] == '1', tonumber(ARGV[4])

-- Stream IDs are two unsigned 64-bit decimals, but Lua numbers are doubles,
-- exact only up to 2^53: above it neighbouring IDs would compare equal and
-- "the ID after" would round. So IDs stay strings, compared and incremented
-- digit by digit, exact over the whole range.
local MAXPART = '18446744073709551615'
-- PAST stands for the ID after 18446744073709551615-18446744073709551615,
-- which does not exist: a bound of PAST keeps no entry. It is also the
-- XRANGE end that includes every entry.
local PAST = '+'

-- parse splits an ID into its parts without leading zeros.
local function parse(id)
  local ms, seq = string.match(id, '^(%d+)-(%d+)$')
  if ms == nil then
    error('redstream: not a stream ID: ' .. tostring(id))
  end
  return (string.gsub(ms, '^0+(%d)', '%1')), (string.gsub(seq, '^0+(%d)', '%1'))
end
-- cmp compares decimals without leading zeros: the longer is the larger,
-- and equal lengths compare digit by digit (bytes, not the locale's
-- collation, which Lua's string < uses).
local function cmp(a, b)
  if #a ~= #b then
    return #a < #b and -1 or 1
  end
  for i = 1, #a do
    local x, y = string.byte(a, i), string.byte(b, i)
    if x ~= y then
      return x < y and -1 or 1
    end
  end
  return 0
end
local function less(a, b)
  if a == PAST then return false end
  if b == PAST then return true end
  local am, as = parse(a)
  local bm, bs = parse(b)
  local c = cmp(am, bm)
  return c < 0 or (c == 0 and cmp(as, bs) < 0)
end
-- incr adds one to a decimal, carrying: "1999" gives "2000", "99" "100".
local function incr(s)
  local i = #s
  while i > 0 and string.byte(s, i) == 57 do -- '9'
    i = i - 1
  end
  if i == 0 then
    return '1' .. string.rep('0', #s)
  end
  return string.sub(s, 1, i - 1) .. string.char(string.byte(s, i) + 1) .. string.rep('0', #s - i)
end
-- after returns the smallest ID above id: a sequence of 2^64-1 carries into
-- the milliseconds, and nothing is above the greatest ID (PAST).
local function after(id)
  local ms, seq = parse(id)
  if seq ~= MAXPART then return ms .. '-' .. incr(seq) end
  if ms ~= MAXPART then return incr(ms) .. '-0' end
  return PAST
end

local safe
for _, g in ipairs(redis.call('XINFO', 'GROUPS', key)) do
  local name, delivered, pending
  for i = 1, #g, 2 do
    if g[i] == 'name' then name = g[i + 1]
    elseif g[i] == 'last-delivered-id' then delivered = g[i + 1]
    elseif g[i] == 'pending' then pending = g[i + 1] end
  end
  local need = after(delivered)
  if pending > 0 then
    local oldest = redis.call('XPENDING', key, name)[2]
    if less(oldest, need) then need = oldest end
  end
  if safe == nil or less(need, safe) then safe = need end
end

local bound, more = nil, 0
if maxlen == 0 and ageBound == '' then
  bound = safe
else
  if maxlen > 0 then
    local excess = redis.call('XLEN', key) - maxlen
    if excess > 0 then
      local upper = '+'
      if safe and safe ~= PAST and not allow then upper = '(' .. safe end
      local e = redis.call('XRANGE', key, '-', upper, 'COUNT', math.min(excess, cap))
      if #e > 0 then bound = after(e[#e][1]) end
      if excess > cap and #e == cap then more = 1 end
    end
  end
  if ageBound ~= '' and (bound == nil or less(bound, ageBound)) then bound = ageBound end
  if bound and safe and not allow and less(safe, bound) then bound = safe end
end
if bound == nil then
  return {0, 0, '', 0}
end
local dropped = 0
if allow and safe and less(safe, bound) then
  local upper = '+'
  if bound ~= PAST then upper = '(' .. bound end
  dropped = #redis.call('XRANGE', key, safe, upper)
end
local removed
if bound == PAST then
  -- MINID cannot name a bound past the greatest ID: every entry goes.
  removed = redis.call('XTRIM', key, 'MAXLEN', 0)
else
  removed = redis.call('XTRIM', key, 'MINID', bound)
end
return {removed, dropped, bound, more}
