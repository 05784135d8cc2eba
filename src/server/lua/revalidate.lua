-- Takes a node's lease again after it ran out and keeps the claims nobody took meanwhile.
-- ARGV: node, token, lease (ms), stream length, then the names the node holds sessions of.
-- Returns the names another live node holds now (their sessions here must end), or -1 when
-- another process holds this node id.
local node, token, lease, smax = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local key = 'parley:node:' .. node
local v = redis.call('GET', key)
if v and v ~= token then return -1 end
redis.call('SET', key, token, 'PX', lease)
redis.call('SADD', 'parley:nodes', node)
local lost = {}
for i = 5, #ARGV do
  local name = ARGV[i]
  local h = redis.call('HGET', 'parley:online', name)
  if h ~= node then
    if h and redis.call('EXISTS', 'parley:node:' .. h) == 1 then
      lost[#lost + 1] = name
    else
      redis.call('HSET', 'parley:online', name, node)
      redis.call('SADD', 'parley:claims:' .. node, name)
      redis.call('XADD', 'parley:events', 'MAXLEN', '~', smax, '*', 'e', 'I ' .. node .. ' ' .. name)
    end
  end
end
return lost
