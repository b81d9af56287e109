/**
 * claim: lease up to `limit` jobs to one worker. Jobs whose lease ran out (their worker died
 * or stalled) come first, then due jobs in due-time order.
 * KEYS[1] due zset, KEYS[2] leased zset
 * ARGV[1] key prefix, ARGV[2] owner, ARGV[3] limit, ARGV[4] lease ms
 * Returns a flat array, 6 per job: id, kind, runId, stepId, runAt, claims.
 * Guarantees: atomic, so two workers never lease the same job; time is Redis's own clock,
 * so executors with skewed clocks agree on what is due and what has expired.
 */
export const CLAIM = `
local now = redis.call('TIME')
local nowMs = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local limit = tonumber(ARGV[3])
local leaseUntil = nowMs + tonumber(ARGV[4])
local out = {}
local taken = 0
local function take(id, from)
  local key = ARGV[1] .. 'job:' .. id
  redis.call('ZREM', from, id)
  if redis.call('EXISTS', key) == 0 then
    redis.call('ZREM', KEYS[1], id)
    redis.call('ZREM', KEYS[2], id)
    return
  end
  redis.call('ZADD', KEYS[2], leaseUntil, id)
  local claims = redis.call('HINCRBY', key, 'claims', 1)
  redis.call('HSET', key, 'owner', ARGV[2])
  local f = redis.call('HMGET', key, 'kind', 'runId', 'stepId', 'runAt')
  out[#out + 1] = id
  out[#out + 1] = f[1]
  out[#out + 1] = f[2]
  out[#out + 1] = f[3]
  out[#out + 1] = f[4]
  out[#out + 1] = tostring(claims)
  taken = taken + 1
end
for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', '(' .. nowMs, 'LIMIT', 0, limit)) do
  take(id, KEYS[2])
end
if taken < limit then
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', nowMs, 'LIMIT', 0, limit - taken)) do
    take(id, KEYS[1])
  end
end
return out
`;
