-- A node starts (ARGV[5] = 'start') or leaves ('leave'). ARGV: node, token, lease (ms),
-- stream length, mode, now (unix seconds). Ends the claims a previous run left (it crashed)
-- or this run holds (it leaves). Starting, takes the lease and returns {was the id held by a
-- live lease, the position to read this node's stream from, the online hash}; leaving, gives
-- the lease up.
local node, token, lease, smax, mode, now = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local key = 'parley:node:' .. node
for _, name in ipairs(redis.call('SMEMBERS', 'parley:claims:' .. node)) do
  if redis.call('HGET', 'parley:online', name) == node then
    redis.call('HDEL', 'parley:online', name)
    redis.call('ZADD', 'parley:lastout', now, name)
    cluster_tell(node, smax, 'O ' .. node .. ' ' .. name)
  end
end
redis.call('DEL', 'parley:claims:' .. node)
if mode == 'leave' then
  if redis.call('GET', key) == token then redis.call('DEL', key) end
  redis.call('SREM', 'parley:nodes', node)
  redis.call('DEL', 'parley:events:' .. node)
  return 0
end
local was = redis.call('EXISTS', key)
redis.call('SET', key, token, 'PX', lease)
redis.call('SADD', 'parley:nodes', node)
-- What the node's stream held is of a previous run: this one starts from the online hash and
-- reads every event told from now on.
redis.call('DEL', 'parley:events:' .. node)
return {was, '0-0', redis.call('HGETALL', 'parley:online')}
