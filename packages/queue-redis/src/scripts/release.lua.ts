/**
 * release: a job is due again after a delay: given back by its worker (shutdown, a failure in
 * the executor), or handed out too early (the record says it is not free yet).
 * KEYS[1] due zset, KEYS[2] leased zset
 * ARGV[1] key prefix, ARGV[2] owner, ARGV[3] job id, ARGV[4] delay ms (from Redis's now)
 * Guarantees: a job another worker holds in Redis stays with that worker; a job Redis does not
 * know yet (a continuation, leased only in the record) is added. The delay is measured on
 * Redis's clock, the one that judges what is due here.
 */
export const RELEASE = `
local now = redis.call('TIME')
local nowMs = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local key = ARGV[1] .. 'job:' .. ARGV[3]
local holder = redis.call('HGET', key, 'owner')
if holder and holder ~= '' and holder ~= ARGV[2] then return 0 end
redis.call('ZREM', KEYS[2], ARGV[3])
redis.call('ZADD', KEYS[1], nowMs + tonumber(ARGV[4]), ARGV[3])
redis.call('HSET', key, 'owner', '')
return 1
`;
