-- Ends the claims of every node whose lease ran out. ARGV: this node, now (unix seconds),
-- stream length. Returns how many claims ended.
local me, now, smax = ARGV[1], ARGV[2], ARGV[3]
local ended = 0
for _, n in ipairs(redis.call('SMEMBERS', 'parley:nodes')) do
  if n ~= me and redis.call('EXISTS', 'parley:node:' .. n) == 0 then
    for _, name in ipairs(redis.call('SMEMBERS', 'parley:claims:' .. n)) do
      if redis.call('HGET', 'parley:online', name) == n then
        redis.call('HDEL', 'parley:online', name)
        redis.call('ZADD', 'parley:lastout', now, name)
        cluster_tell(n, smax, 'O ' .. n .. ' ' .. name)
        ended = ended + 1
      end
    end
    redis.call('DEL', 'parley:claims:' .. n)
    redis.call('SREM', 'parley:nodes', n)
    redis.call('DEL', 'parley:events:' .. n)
  end
end
return ended
