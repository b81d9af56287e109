/**
 * enqueue: make jobs already committed to Postgres claimable.
 * KEYS[1] due zset, KEYS[2] leased zset
 * ARGV[1] key prefix, ARGV[2] owner ("" = not leased), ARGV[3] lease ms,
 * then 5 per job: id, kind, runId, stepId ("" = none), runAt (ms)
 * Guarantees: a job is in exactly one of due / leased afterwards; a job handed to `owner`
 * (a continuation) is leased, never in due, so no other worker can claim it while the lease holds.
 */
export const ENQUEUE = `
local now = redis.call('TIME')
local nowMs = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local owner = ARGV[2]
local leaseUntil = nowMs + tonumber(ARGV[3])
for i = 4, #ARGV, 5 do
  local id = ARGV[i]
  local key = ARGV[1] .. 'job:' .. id
  redis.call('HSET', key, 'kind', ARGV[i + 1], 'runId', ARGV[i + 2], 'stepId', ARGV[i + 3], 'runAt', ARGV[i + 4], 'owner', owner)
  if owner ~= '' then
    redis.call('HINCRBY', key, 'claims', 1)
    redis.call('ZREM', KEYS[1], id)
    redis.call('ZADD', KEYS[2], leaseUntil, id)
  else
    redis.call('HSETNX', key, 'claims', 0)
    redis.call('ZADD', KEYS[1], tonumber(ARGV[i + 4]), id)
  end
end
return 1
`;
