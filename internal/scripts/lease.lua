-- A partition lease: which consumer of a group reads a stream.
-- KEYS[1]: the lease key. ARGV[1]: the consumer. ARGV[2]: "take" or
-- "release". ARGV[3]: the lease time in milliseconds (take).
-- take: sets the lease if free, extends it if the consumer holds it;
-- release: deletes it if the consumer holds it. Returns 1 when the consumer
-- holds (take) or held (release) the lease, 0 when another consumer does.
local holder = redis.call('GET', KEYS[1])
if ARGV[2] == 'take' then
  if not holder or holder == ARGV[1] then
    redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[3])
    return 1
  end
  return 0
end
if holder == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
