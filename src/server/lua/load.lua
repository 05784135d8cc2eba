-- A page of one recipient's queue (store_redis.c redis_queue_load), read only. ARGV: the
-- recipient, after_id, limit (0: all). The queue parley:q:<name> holds elements of messages
-- joined by NUL bytes, oldest first, parley:qc:<name> each element's count, and parley:qpos
-- "<name> head" the id of the first element's first message; the messages up to "<name>
-- acked" were acknowledged (batch.lua). Answers {the id of the first message returned, the
-- messages ("<time> <sender> <body>") with ids above after_id, at most limit}.
local name, limit = ARGV[1], tonumber(ARGV[3])
local pos = redis.call('HMGET', 'parley:qpos', name .. ' acked', name .. ' head')
local after = math.max(tonumber(ARGV[2]), tonumber(pos[1] or '0'))
local id = tonumber(pos[2] or '1') -- the id of the first message of element `at`
local READ = 256 -- counts read at a time
local out, first_id = {}, after + 1
-- The first element holding a message above `after`, found by the counts alone.
local at, found = 0, false
while not found do
  local counts = redis.call('LRANGE', 'parley:qc:' .. name, at, at + READ - 1)
  for _, c in ipairs(counts) do
    if id + tonumber(c) - 1 > after then
      found = true
      break
    end
    id = id + tonumber(c)
    at = at + 1
  end
  if #counts < READ then break end
end
-- The messages from there, split.
while found and (limit == 0 or #out < limit) do
  local elems = redis.call('LRANGE', 'parley:q:' .. name, at, at + 15)
  for _, e in ipairs(elems) do
    local from = 1
    repeat
      local to = string.find(e, '\0', from, true)
      if id > after then
        if #out == 0 then first_id = id end
        out[#out + 1] = string.sub(e, from, (to or 0) - 1)
      end
      id = id + 1
      from = (to or #e) + 1
    until not to or (limit > 0 and #out >= limit)
    if limit > 0 and #out >= limit then break end
  end
  if #elems < 16 then break end
  at = at + 16
end
return {first_id, out}
