-- Takes a node's lease (again: it may have run out) and puts its claims right: those it holds
-- sessions of and nobody took meanwhile are kept, the others end (a logout Redis never heard
-- of while it was unreachable). ARGV: node, token, lease (ms), stream length, now (unix
-- seconds), then the names the node holds sessions of. Returns the names another live node
-- holds now (their sessions here must end), or -1 when another process holds this node id.
local node, token, lease, smax, now = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local key = 'parley:node:' .. node
local v = redis.call('GET', key)
if v and v ~= token then return -1 end
redis.call('SET', key, token, 'PX', lease)
redis.call('SADD', 'parley:nodes', node)
local lost, here = {}, {}
for i = 6, #ARGV do
  local name = ARGV[i]
  here[name] = true
  local h = redis.call('HGET', 'parley:online', name)
  if h ~= node then
    if h and redis.call('EXISTS', 'parley:node:' .. h) == 1 then
      lost[#lost + 1] = name
    else
      redis.call('HSET', 'parley:online', name, node)
      redis.call('SADD', 'parley:claims:' .. node, name)
      cluster_tell(node, smax, 'I ' .. node .. ' ' .. name)
    end
  end
end
for _, name in ipairs(redis.call('SMEMBERS', 'parley:claims:' .. node)) do
  if not here[name] then
    redis.call('SREM', 'parley:claims:' .. node, name)
    if redis.call('HGET', 'parley:online', name) == node then
      redis.call('HDEL', 'parley:online', name)
      redis.call('ZADD', 'parley:lastout', now, name)
      cluster_tell(node, smax, 'O ' .. node .. ' ' .. name)
    end
  end
end
return lost
