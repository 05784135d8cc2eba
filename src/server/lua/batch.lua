-- One loop iteration's writes of one node (cluster.c cluster_flush). ARGV: node, token,
-- deadline (Redis's clock, unix ms), stream length, then the operations, each a letter and its
-- arguments; the answer has one element per operation (a Q for all of its messages: {the
-- first one's id, how many were queued, the answer of the others}, cluster.h cluster_op_item).
-- A batch Redis starts after its deadline does nothing: the node has answered its requests
-- "unavailable" by then. docs/CLUSTER.md lists the keys and the operations. Inside Redis each
-- call costs more than the command it runs (with the AOF on, each write is also propagated
-- into it), so the batch makes few, and little per message: a recipient's messages of one
-- batch are one run, queued with one RPUSH and published in the stream as the strings the node
-- sent (its messages joined by NUL bytes), and the ids and holders of all the runs are read and
-- written with one call each (PERFORMANCE.md §13).
local node, token, smax = ARGV[1], ARGV[2], ARGV[4]
local EV_PER_ENTRY = 64 -- fields in one stream entry (cluster.c reads every field of an entry)
local PUSH_CHUNK = 1000 -- values in one call (Lua's unpack has a limit)
local t = redis.call('TIME')
if tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) > tonumber(ARGV[3]) then
  return redis.error_reply('parley: batch past its deadline')
end
local held = redis.call('GET', 'parley:node:' .. node) == token
local out = {}
-- Each node reads its own stream, parley:events:<node>: an event goes to every other node's
-- stream (the node that made it applied it already), a run of messages only to the stream of
-- the node its recipient is logged in at (none when the recipient is offline: the queue keeps
-- it for the next login). The entries being filled, one per node: their fields are 'e' and an
-- event, or a run of messages to one recipient: its header ("r <node> <recipient> <id of its
-- first message>") and its messages, as the node sent them, joined by NUL bytes (a message has
-- none: store_redis.c refuses it). An entry holds up to EV_PER_ENTRY fields, all events or all
-- runs.
-- An entry of runs is not written to the append-only file (it goes to replicas only): its
-- messages are in the queues, which are, and a node whose links dropped (as when Redis
-- restarts) reads its sessions' queues again (cluster.c resync). So a message is written to the
-- disk once, not twice (PERFORMANCE.md §13).
local entries, kinds = {}, {}
local peers -- the other nodes, read once
local RUNS_REPL = redis.REPL_REPLICA or redis.REPL_SLAVE
local function flush_entry(to)
  local e = entries[to]
  if e and #e > 0 then
    if kinds[to] == 'r' then redis.set_repl(RUNS_REPL) end
    redis.call('XADD', 'parley:events:' .. to, 'MAXLEN', '~', smax, '*', unpack(e))
    if kinds[to] == 'r' then redis.set_repl(redis.REPL_ALL) end
  end
  entries[to], kinds[to] = nil, nil
end
-- Adds a field of kind 'e' or 'r' to the entry of `to`, after an XADD of the entry when it is
-- full or of the other kind.
local function emit(to, kind, name, value)
  local e = entries[to]
  if e and (#e >= 2 * EV_PER_ENTRY or kinds[to] ~= kind) then flush_entry(to) end
  e = entries[to] or {}
  entries[to], kinds[to] = e, kind
  e[#e + 1] = name
  e[#e + 1] = value
end
local close_runs -- defined below, with the runs
local function ev(text)
  close_runs()
  if not peers then
    peers = {}
    for _, n in ipairs(redis.call('SMEMBERS', 'parley:nodes')) do
      if n ~= node then peers[#peers + 1] = n end
    end
  end
  for _, to in ipairs(peers) do emit(to, 'e', 'e', text) end
end
-- The queued messages wait until the next event or the batch's end, when they are stored all at
-- once with few calls, the most expensive part of the script: one HMGET tells who holds their
-- senders and recipients, one HMGET and one HSET of parley:qpos give their ids and check the
-- limits, and each recipient's messages are queued with one RPUSH (and their counts with
-- another) and published as one field per operation. They are stored before any event, so the
-- stream keeps the order of the operations. A queue element (parley:q:<name>) is one
-- operation's messages, the string the node sent (joined by NUL bytes): Redis's Lua hashes
-- every byte of a string it makes, so the script makes none of them. parley:qc:<name> holds
-- each element's count of messages, and parley:qpos three positions of each queue: "<name>"
-- the last id, "<name> acked" the acknowledged mark, "<name> head" the id of the first message
-- of the first element (docs/CLUSTER.md). pend: the Q operations waiting, each {sender,
-- recipient, limit, count, messages, answer}.
local pend = {}
local queued = 0
-- Calls `cmd key` with the values of `list`, `step` at a time.
local function call_in_chunks(cmd, key, list, step)
  for c = 1, #list, step do
    redis.call(cmd, key, unpack(list, c, math.min(c + step - 1, #list)))
  end
end
-- HMGET of `fields` (in chunks: Lua's unpack has a limit); a table field -> value (false: none).
local function hmget(key, fields)
  local got = {}
  for c = 1, #fields, PUSH_CHUNK do
    local last = math.min(c + PUSH_CHUNK - 1, #fields)
    local v = redis.call('HMGET', key, unpack(fields, c, last))
    for j = c, last do got[fields[j]] = v[j - c + 1] end
  end
  return got
end
-- Who holds the pending operations' senders and recipients (parley:online), read once.
local function holders()
  local names, seen = {}, {}
  for _, q in ipairs(pend) do
    if not seen[q[1]] then names[#names + 1], seen[q[1]] = q[1], true end
    if not seen[q[2]] then names[#names + 1], seen[q[2]] = q[2], true end
  end
  return hmget('parley:online', names)
end
-- Why a sender may not queue for a recipient, from the blocks (a node may not have read a
-- block's event yet): -3 the recipient blocks the sender, -4 the sender blocks the recipient,
-- else false. Asked once per pair of a batch.
local barred = {}
local function bar(from, to)
  local key = from .. ' ' .. to
  local b = barred[key]
  if b == nil then
    local v = redis.call('SMISMEMBER', 'parley:blocks', to .. ' ' .. from, key)
    b = (v[1] == 1 and -3) or (v[2] == 1 and -4) or false
    barred[key] = b
  end
  return b
end
-- The pending operations whose senders this node holds and whom no block bars, by recipient
-- (the others are refused), and the recipients in order.
local function runs_of(at)
  local runs, order = {}, {}
  for _, q in ipairs(pend) do
    local mine = held and at[q[1]] == node
    local b = mine and bar(q[1], q[2])
    if b then
      q[6][3] = b
    elseif mine then
      local run = runs[q[2]]
      if not run then
        run = {}
        runs[q[2]] = run
        order[#order + 1] = q[2]
      end
      run[#run + 1] = q
    else
      q[6][3] = -2
    end
  end
  return runs, order
end
-- The first `take` of the `k` messages of `text` (joined by NUL bytes).
local function first_messages(text, k, take)
  if take == k then return text end
  local at = 0
  for _ = 1, take do at = string.find(text, '\0', at + 1, true) end
  return string.sub(text, 1, at - 1)
end
-- Queues the operations of one recipient's run after the message `last`, those up to `acked`
-- acknowledged; returns the new last id.
local function push_run(r, run, last, acked, to)
  local elems, counts = {}, {}
  for _, q in ipairs(run) do
    local k, take = q[4], q[4]
    if q[3] > 0 then take = math.max(0, math.min(k, q[3] - (last - acked))) end
    if take > 0 then
      local text = first_messages(q[5], k, take)
      local first = string.format('%d', last + 1)
      elems[#elems + 1], counts[#counts + 1] = text, take
      if to then emit(to, 'r', 'r ' .. node .. ' ' .. r .. ' ' .. first, text) end
      q[6][1], q[6][2] = last + 1, take
      last = last + take
      queued = queued + take
    end
  end
  call_in_chunks('RPUSH', 'parley:q:' .. r, elems, PUSH_CHUNK)
  call_in_chunks('RPUSH', 'parley:qc:' .. r, counts, PUSH_CHUNK)
  return last
end
close_runs = function()
  if #pend == 0 then return end
  local at = holders()
  local runs, order = runs_of(at)
  local fields = {}
  for _, r in ipairs(order) do
    fields[#fields + 1] = r
    fields[#fields + 1] = r .. ' acked'
  end
  local pos = hmget('parley:qpos', fields)
  local changed = {}
  for _, r in ipairs(order) do
    local last0, acked = tonumber(pos[r] or '0'), tonumber(pos[r .. ' acked'] or '0')
    local last = push_run(r, runs[r], last0, acked, at[r])
    if last ~= last0 then
      changed[#changed + 1] = r
      changed[#changed + 1] = string.format('%d', last)
      if last0 == acked then -- the queue was empty: its first element is the one just queued
        changed[#changed + 1] = r .. ' head'
        changed[#changed + 1] = string.format('%d', last0 + 1)
      end
    end
  end
  call_in_chunks('HSET', 'parley:qpos', changed, 2 * PUSH_CHUNK) -- field, value pairs
  pend = {}
end
local HEAD_READ = 64 -- element counts an acknowledgement reads at a time
-- Takes the messages up to `upto` off the queue of `r`: the mark "<r> acked" says how far, and
-- the elements wholly acknowledged leave the lists (the queue is empty when the mark is at its
-- last id). Returns how many went.
local function ack(r, upto)
  local v = redis.call('HMGET', 'parley:qpos', r, r .. ' acked', r .. ' head')
  local last, acked, head = tonumber(v[1] or '0'), tonumber(v[2] or '0'), tonumber(v[3] or '1')
  upto = math.min(upto, last)
  if upto <= acked then return 0 end
  repeat
    local counts = redis.call('LRANGE', 'parley:qc:' .. r, 0, HEAD_READ - 1)
    local gone = 0
    for _, c in ipairs(counts) do
      if head + tonumber(c) - 1 > upto then break end
      head = head + tonumber(c)
      gone = gone + 1
    end
    if gone > 0 then
      redis.call('LTRIM', 'parley:q:' .. r, gone, -1)
      redis.call('LTRIM', 'parley:qc:' .. r, gone, -1)
    end
  until gone < HEAD_READ
  redis.call('HSET', 'parley:qpos', r .. ' acked', string.format('%d', upto), r .. ' head',
    string.format('%d', head))
  return upto - acked
end
local i, n = 5, #ARGV
while i <= n do
  local op = ARGV[i]
  if op == 'Q' then
    -- sender, recipient, the queue's limit, a count, then that many messages as queued ("<time>
    -- <sender> <body>") joined by NUL bytes: consecutive messages of one sender to one
    -- recipient (cluster_op_item). The answer, filled in when they are stored: {the first
    -- one's id, how many were queued, the answer of the others: -1 the queue is full, -2 this
    -- node does not hold the sender, -3 the recipient blocks the sender, -4 the sender blocks
    -- the recipient}.
    local answer = {0, 0, -1}
    out[#out + 1] = answer
    pend[#pend + 1] = {ARGV[i + 1], ARGV[i + 2], tonumber(ARGV[i + 3]), tonumber(ARGV[i + 4]),
      ARGV[i + 5], answer}
    i = i + 6
  elseif op == 'A' then
    -- Every message up to `upto` goes. A run of this batch still waiting is not in the queue
    -- yet, and its ids are all above `upto`.
    local k = ack(ARGV[i + 1], tonumber(ARGV[i + 2]))
    i = i + 3
    queued = queued - k
    out[#out + 1] = k
  elseif op == 'C' then
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
    close_runs() -- the messages before it are not barred by it, those after it are
    redis.call('SADD', 'parley:blocks', a .. ' ' .. b)
    barred = {}
    redis.call('SADD', 'parley:blockedby:' .. b, a)
    ev('K ' .. node .. ' ' .. a .. ' ' .. b)
    out[#out + 1] = 0
  elseif op == 'U' then
    local a, b = ARGV[i + 1], ARGV[i + 2]
    i = i + 3
    close_runs()
    local k = redis.call('SREM', 'parley:blocks', a .. ' ' .. b)
    barred = {}
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
    break -- the rest cannot be read; what ran is kept (its messages are queued below)
  end
end
close_runs()
for to in pairs(entries) do flush_entry(to) end
if queued ~= 0 then redis.call('HINCRBY', 'parley:stats', 'messages', queued) end
return out
