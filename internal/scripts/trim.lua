-- Trims a stream by policy without removing what a consumer group still
-- needs, computing that bound and trimming in one atomic step.
--
-- A group needs every entry from the lower of its oldest pending ID and the
-- ID just after its last-delivered ID. The safe bound is the lowest of
-- those over all groups (none when the stream has no groups).
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
-- ("" when nothing was trimmed); more is 1 when a max-length trim hit the
-- per-call limit.
local key = KEYS[1]
local maxlen, ageBound, allow, cap = tonumber(ARGV[1]), ARGV[2], ARGV[3] == '1', tonumber(ARGV[4])

local function parse(id)
  local ms, seq = string.match(id, '^(%d+)-(%d+)$')
  return tonumber(ms), tonumber(seq)
end
local function less(a, b)
  local am, as = parse(a)
  local bm, bs = parse(b)
  return am < bm or (am == bm and as < bs)
end
local function after(id)
  local ms, seq = parse(id)
  return string.format('%d-%d', ms, seq + 1)
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
      if safe and not allow then upper = '(' .. safe end
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
  dropped = #redis.call('XRANGE', key, safe, '(' .. bound)
end
local removed = redis.call('XTRIM', key, 'MINID', bound)
return {removed, dropped, bound, more}
