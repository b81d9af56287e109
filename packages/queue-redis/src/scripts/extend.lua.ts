/**
 * extend: a worker's heartbeat. Pushes the lease of each job it still holds to now + lease ms.
 * KEYS[1] leased zset
 * ARGV[1] key prefix, ARGV[2] owner, ARGV[3] lease ms, ARGV[4..] job ids
 * Guarantees: only the current holder extends; a job another worker took over is left alone.
 */
export const EXTEND = `
local now = redis.call('TIME')
local nowMs = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local leaseUntil = nowMs + tonumber(ARGV[3])
local extended = 0
for i = 4, #ARGV do
  local id = ARGV[i]
  if redis.call('HGET', ARGV[1] .. 'job:' .. id, 'owner') == ARGV[2] then
    redis.call('ZADD', KEYS[1], 'XX', leaseUntil, id)
    extended = extended + 1
  end
end
return extended
`;
