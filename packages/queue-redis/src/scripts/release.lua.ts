/**
 * release: a worker gives a job back (shutdown, or a failure in the executor), due at runAt.
 * KEYS[1] due zset, KEYS[2] leased zset
 * ARGV[1] key prefix, ARGV[2] owner, ARGV[3] job id, ARGV[4] runAt (ms)
 * Guarantees: only the holder releases; a job another worker took over stays with that worker.
 */
export const RELEASE = `
local key = ARGV[1] .. 'job:' .. ARGV[3]
if redis.call('HGET', key, 'owner') ~= ARGV[2] then return 0 end
redis.call('ZREM', KEYS[2], ARGV[3])
redis.call('ZADD', KEYS[1], tonumber(ARGV[4]), ARGV[3])
redis.call('HSET', key, 'owner', '')
return 1
`;
