-- Publishes once per business key within a window: checks the key's
-- marker and appends the entry in one step.
-- KEYS[1] the stream; KEYS[2] the marker, "<entry ID> <call nonce>"
-- ARGV[1] the window in ms; ARGV[2] the nonce of this publish call;
-- ARGV[3..] the XADD arguments after the key (trim, ID, fields).
-- Reply {1, id}: appended by this call (or by its first run, for a
-- client's resend, which carries the same nonce); {0, id}: the key was
-- published before, by another call, as entry id.
local prev = redis.call('GET', KEYS[2])
if prev then
  local sp = string.find(prev, ' ', 1, true)
  local id = string.sub(prev, 1, sp - 1)
  if string.sub(prev, sp + 1) == ARGV[2] then
    return {1, id}
  end
  return {0, id}
end
local id = redis.call('XADD', KEYS[1], unpack(ARGV, 3))
redis.call('SET', KEYS[2], id .. ' ' .. ARGV[2], 'PX', ARGV[1])
return {1, id}
