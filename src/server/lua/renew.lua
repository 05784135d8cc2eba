-- Renews a node's lease. ARGV: node, token, lease (ms). 1: renewed; 0: gone (it ran out: the
-- claims must be re-validated); -1: another process holds this node id.
local key = 'parley:node:' .. ARGV[1]
local v = redis.call('GET', key)
if v == ARGV[2] then
  redis.call('PEXPIRE', key, ARGV[3])
  return 1
end
if v then return -1 end
return 0
