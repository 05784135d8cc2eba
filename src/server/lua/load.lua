-- A page of one recipient's queue (store_redis.c redis_queue_load), read only. ARGV: the
-- recipient, after_id, limit (0: all). The queue parley:q:<name> holds the messages with ids
-- qnext - LLEN + 1 .. qnext (parley:qnext), oldest first. Answers {the id of the first message
-- returned, the messages ("<time> <sender> <body>") with ids above after_id, at most limit}.
local key = 'parley:q:' .. ARGV[1]
local len = redis.call('LLEN', key)
local last = tonumber(redis.call('HGET', 'parley:qnext', ARGV[1]) or '0')
local head = last - len + 1
local start = math.max(0, tonumber(ARGV[2]) + 1 - head)
local limit = tonumber(ARGV[3])
local stop = limit > 0 and start + limit - 1 or -1
return {head + start, redis.call('LRANGE', key, start, stop)}
