-- A page of one recipient's queue (store_redis.c redis_queue_load), read only. ARGV: the
-- recipient, after_id, limit (0: all). The queue parley:q:<name> holds elements of messages,
-- oldest first, each "<id of the first> <count>", a NUL byte, then the messages joined by NUL
-- bytes; those up to parley:qids "<name> acked" were acknowledged (batch.lua). Answers {the id
-- of the first message returned, the messages ("<time> <sender> <body>") with ids above
-- after_id, at most limit}.
local name, limit = ARGV[1], tonumber(ARGV[3])
local key = 'parley:q:' .. name
local acked = tonumber(redis.call('HGET', 'parley:qids', name .. ' acked') or '0')
local after = math.max(tonumber(ARGV[2]), acked)
local READ = 64 -- elements read at a time
local out, first_id = {}, after + 1
local at = 0
while limit == 0 or #out < limit do
  local elems = redis.call('LRANGE', key, at, at + READ - 1)
  for _, e in ipairs(elems) do
    local sp = string.find(e, ' ', 1, true)
    local z = string.find(e, '\0', sp, true)
    local id, k = tonumber(string.sub(e, 1, sp - 1)), tonumber(string.sub(e, sp + 1, z - 1))
    if id + k - 1 > after then
      local from = z + 1
      for j = 0, k - 1 do
        local to = string.find(e, '\0', from, true)
        if id + j > after then
          if #out == 0 then first_id = id + j end
          out[#out + 1] = string.sub(e, from, (to or 0) - 1)
          if limit > 0 and #out >= limit then break end
        end
        if not to then break end
        from = to + 1
      end
    end
    if limit > 0 and #out >= limit then break end
  end
  if #elems < READ then break end
  at = at + READ
end
return {first_id, out}
