-- (scripts/lua2c.sh puts this before each script that calls it.) Tells every node but `from`
-- (the node the event is about, which applied it already) one event, in its own stream
-- parley:events:<node>, kept to about `smax` entries.
local function cluster_tell(from, smax, text)
  for _, n in ipairs(redis.call('SMEMBERS', 'parley:nodes')) do
    if n ~= from then
      redis.call('XADD', 'parley:events:' .. n, 'MAXLEN', '~', smax, '*', 'e', text)
    end
  end
end
