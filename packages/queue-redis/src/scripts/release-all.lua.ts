/**
 * release-all: every leased job becomes due now (a single executor restarting after a crash).
 * KEYS[1] due zset, KEYS[2] leased zset
 * ARGV[1] key prefix
 * Guarantees: no job is dropped; each moves from leased to due.
 */
export const RELEASE_ALL = `
local now = redis.call('TIME')
local nowMs = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
for _, id in ipairs(redis.call('ZRANGE', KEYS[2], 0, -1)) do
  redis.call('ZADD', KEYS[1], nowMs, id)
  redis.call('HSET', ARGV[1] .. 'job:' .. id, 'owner', '')
end
redis.call('DEL', KEYS[2])
return 1
`;
