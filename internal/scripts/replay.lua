-- Puts one dead-lettered entry back on its stream and removes it from the
-- dead-letter stream, atomically: replaying the same ID twice appends once.
--
-- KEYS[1]  the dead-letter stream
-- KEYS[2]  the stream (same hash slot)
-- ARGV[1]  dead-letter entry ID
--
-- Returns the new entry's ID, or false when the dead-letter entry does not
-- exist (already replayed or deleted). Errors when the entry came from
-- another stream or has no fields of its own, and (NOSTREAM) when the
-- stream does not exist: appended, the entry would create a stream with no
-- group, which a consumer starting at "$" never reads.
--
-- The failed attempts a long retry carried (redstream-attempts) are left
-- out: a replayed message starts with a fresh count. The group a long
-- retry was for (redstream-retry-group) is kept: the other groups of the
-- stream handled the message already.
local e = redis.call('XRANGE', KEYS[1], ARGV[1], ARGV[1])
if #e == 0 then
  return false
end
local args = {KEYS[2], '*'}
local fields = e[1][2]
local origin
for i = 1, #fields, 2 do
  local name = fields[i]
  if string.sub(name, 1, 18) == 'dead-letter:field:' then
    args[#args + 1] = string.sub(name, 19)
    args[#args + 1] = fields[i + 1]
  elseif name == 'dead-letter:stream' then
    origin = fields[i + 1]
  elseif name == 'dead-letter:fields-omitted' then
    return redis.error_reply('ERR redstream: dead-letter entry ' .. ARGV[1] .. ' was recorded without its ' .. fields[i + 1] .. ' fields (too many to copy); read them from its origin entry')
  elseif string.sub(name, 1, 12) ~= 'dead-letter:' and name ~= 'redstream-attempts' then
    args[#args + 1] = name
    args[#args + 1] = fields[i + 1]
  end
end
if origin == nil then
  return redis.error_reply('ERR redstream: dead-letter entry ' .. ARGV[1] .. ' has no dead-letter:stream field: not written by redstream')
end
if origin ~= KEYS[2] then
  return redis.error_reply('ERR redstream: dead-letter entry ' .. ARGV[1] .. ' came from ' .. origin .. ', not ' .. KEYS[2])
end
if #args == 2 then
  return redis.error_reply('ERR redstream: dead-letter entry ' .. ARGV[1] .. ' holds no fields to replay')
end
if redis.call('EXISTS', KEYS[2]) == 0 then
  return redis.error_reply('NOSTREAM redstream: ' .. KEYS[2] .. ' does not exist')
end
local id = redis.call('XADD', unpack(args))
redis.call('XDEL', KEYS[1], ARGV[1])
return id
