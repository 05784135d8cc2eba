-- One loop iteration's writes of one node (cluster.c cluster_flush). ARGV: node, token,
-- deadline (Redis's clock, unix ms), stream length, then the operations, each a letter and its
-- arguments; the answer has one element per operation. A batch Redis starts after its
-- deadline does nothing: the node has answered its requests "unavailable" by then.
-- docs/CLUSTER.md lists the keys and the operations. Inside Redis a call costs more than the
-- command it runs (with the AOF on, each write is also propagated into it), so the batch makes
-- few: the events go into the stream at the end, EV_PER_ENTRY to an entry, and the messages
-- to one recipient in one ZADD (PERFORMANCE.md §13).
local node, token, smax = ARGV[1], ARGV[2], ARGV[4]
local EV_PER_ENTRY = 64 -- events in one stream entry (cluster.c reads every field of an entry)
local ZADD_CHUNK = 1000 -- messages in one ZADD (Lua's unpack has a limit)
local t = redis.call('TIME')
if tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) > tonumber(ARGV[3]) then
  return redis.error_reply('parley: batch past its deadline')
end
local held = redis.call('GET', 'parley:node:' .. node) == token
local out = {}
local evs = {}
local function ev(text)
  evs[#evs + 1] = text
end
-- The messages to each recipient waiting for their ZADD, and each recipient's queue length.
local adds, qlen = {}, {}
local function add_flush(r)
  local a = adds[r]
  if not a then return end
  for c = 1, #a, 2 * ZADD_CHUNK do
    redis.call('ZADD', 'parley:q:' .. r, unpack(a, c, math.min(c + 2 * ZADD_CHUNK - 1, #a)))
  end
  adds[r] = nil
end
local function queue_len(r)
  if not qlen[r] then qlen[r] = redis.call('ZCARD', 'parley:q:' .. r) end
  return qlen[r]
end
local owned = {}
local function mine(name)
  if owned[name] == nil then
    owned[name] = held and redis.call('HGET', 'parley:online', name) == node
  end
  return owned[name]
end
-- Ids and the waiting count are read once and written once per batch, not per message.
local nextid, queued = nil, 0
local i, n = 5, #ARGV
while i <= n do
  local op = ARGV[i]
  if op == 'P' then
    local s, r, at, body, max = ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4], tonumber(ARGV[i + 5])
    i = i + 6
    if not mine(s) then
      out[#out + 1] = -2
    elseif max > 0 and queue_len(r) >= max then
      out[#out + 1] = -1
    else
      if not nextid then nextid = tonumber(redis.call('GET', 'parley:nextid') or '0') end
      nextid = nextid + 1
      local id = nextid
      -- formatted once, as an integer, for the score, the member and the event (Lua's own
      -- number-to-text is a float printf, which showed in Redis's profile)
      local ids = string.format('%d', id)
      local a = adds[r]
      if not a then a = {} adds[r] = a end
      a[#a + 1] = ids
      a[#a + 1] = ids .. ' ' .. at .. ' ' .. s .. ' ' .. body
      if qlen[r] then qlen[r] = qlen[r] + 1 end
      queued = queued + 1
      ev('M ' .. node .. ' ' .. ids .. ' ' .. r .. ' ' .. at .. ' ' .. s .. ' ' .. body)
      out[#out + 1] = id
    end
  elseif op == 'A' then
    local r, upto = ARGV[i + 1], ARGV[i + 2]
    i = i + 3
    add_flush(r) -- what this batch queued for `r` first, so the removal sees the whole queue
    local k = redis.call('ZREMRANGEBYSCORE', 'parley:q:' .. r, '-inf', upto)
    if qlen[r] then qlen[r] = qlen[r] - k end
    queued = queued - k
    out[#out + 1] = k
  elseif op == 'C' then
    owned[ARGV[i + 1]] = nil
    local name = ARGV[i + 1]
    i = i + 2
    local h = redis.call('HGET', 'parley:online', name)
    if not held then
      out[#out + 1] = -2
    elseif h and h ~= node and redis.call('EXISTS', 'parley:node:' .. h) == 1 then
      out[#out + 1] = 0
    else
      if h and h ~= node then redis.call('SREM', 'parley:claims:' .. h, name) end
      redis.call('HSET', 'parley:online', name, node)
      redis.call('SADD', 'parley:claims:' .. node, name)
      ev('I ' .. node .. ' ' .. name)
      out[#out + 1] = 1
    end
  elseif op == 'O' then
    local name, at = ARGV[i + 1], ARGV[i + 2]
    owned[name] = nil
    i = i + 3
    redis.call('ZADD', 'parley:lastout', at, name)
    if redis.call('HGET', 'parley:online', name) == node then
      redis.call('HDEL', 'parley:online', name)
      redis.call('SREM', 'parley:claims:' .. node, name)
      ev('O ' .. node .. ' ' .. name)
    end
    out[#out + 1] = 0
  elseif op == 'B' then
    local a, b = ARGV[i + 1], ARGV[i + 2]
    i = i + 3
    redis.call('SADD', 'parley:blocks', a .. ' ' .. b)
    redis.call('SADD', 'parley:blockedby:' .. b, a)
    ev('K ' .. node .. ' ' .. a .. ' ' .. b)
    out[#out + 1] = 0
  elseif op == 'U' then
    local a, b = ARGV[i + 1], ARGV[i + 2]
    i = i + 3
    local k = redis.call('SREM', 'parley:blocks', a .. ' ' .. b)
    redis.call('SREM', 'parley:blockedby:' .. b, a)
    if k == 1 then ev('U ' .. node .. ' ' .. a .. ' ' .. b) end
    out[#out + 1] = k
  elseif op == 'L' then
    local name, ok = ARGV[i + 1], ARGV[i + 2]
    local now, maxf, dur = tonumber(ARGV[i + 3]), tonumber(ARGV[i + 4]), tonumber(ARGV[i + 5])
    i = i + 6
    local f, u = 0, 0
    local rec = redis.call('HGET', 'parley:locks', name)
    if rec then
      local x, y = string.match(rec, '^(%d+) (%d+)$')
      f, u = tonumber(x) or 0, tonumber(y) or 0
    end
    local f0, u0, v = f, u, 0
    if u ~= 0 and now < u * 1000 then
      v = 3
    else
      if u ~= 0 then f = 0 end
      u = 0
      if ok == '1' then
        f = 0
      else
        f = f + 1
        if f < math.max(maxf, 1) then
          v = 1
        else
          v = 2
          u = math.floor(now / 1000) + ((now % 1000 ~= 0) and 1 or 0) + dur
        end
      end
    end
    if f ~= f0 or u ~= u0 then
      if f == 0 and u == 0 then
        redis.call('HDEL', 'parley:locks', name)
      else
        redis.call('HSET', 'parley:locks', name, string.format('%d %d', f, u))
      end
      ev(string.format('L %s %s %d %d', node, name, f, u))
    end
    out[#out + 1] = {v, f, u}
  elseif op == 'R' then
    local name, hash = ARGV[i + 1], ARGV[i + 2]
    i = i + 3
    if redis.call('HSETNX', 'parley:accounts', name, hash) == 1 then
      ev('R ' .. node .. ' ' .. name .. ' ' .. hash)
    end
    out[#out + 1] = 0
  elseif op == 'F' then
    redis.call('ZREM', 'parley:lastout', ARGV[i + 1])
    i = i + 2
    out[#out + 1] = 0
  elseif op == 'X' then
    local s = ARGV[i + 1]
    ev('B ' .. node .. ' ' .. s .. ' ' .. ARGV[i + 2])
    i = i + 3
    local k = 0
    for _, m in ipairs(redis.call('SMEMBERS', 'parley:blockedby:' .. s)) do
      if m ~= s and redis.call('HEXISTS', 'parley:online', m) == 1 then k = k + 1 end
    end
    out[#out + 1] = k
  elseif op == 'V' then
    ev('P ' .. node .. ' ' .. ARGV[i + 1])
    i = i + 2
    out[#out + 1] = 0
  else
    out[#out + 1] = redis.error_reply('parley: unknown operation ' .. tostring(op))
    break -- the rest cannot be read; what ran is kept, and the ids below are saved
  end
end
for r in pairs(adds) do add_flush(r) end
for c = 1, #evs, EV_PER_ENTRY do
  local f = {}
  for j = c, math.min(c + EV_PER_ENTRY - 1, #evs) do
    f[#f + 1] = 'e'
    f[#f + 1] = evs[j]
  end
  redis.call('XADD', 'parley:events', 'MAXLEN', '~', smax, '*', unpack(f))
end
if nextid then redis.call('SET', 'parley:nextid', nextid) end
if queued ~= 0 then redis.call('HINCRBY', 'parley:stats', 'messages', queued) end
return out
