/**
 * reconcile: re-add jobs that Postgres holds but Redis lost (a flush, a failover, a crash
 * between a commit and its publish).
 * KEYS[1] due zset, KEYS[2] leased zset
 * ARGV[1] key prefix, then 5 per job: id, kind, runId, stepId, runAt (ms)
 * Returns how many jobs were missing and re-added.
 * Guarantees: a job Redis still knows (due or leased) is left exactly as it is.
 */
export const RECONCILE = `
local added = 0
for i = 2, #ARGV, 5 do
  local id = ARGV[i]
  if not redis.call('ZSCORE', KEYS[1], id) and not redis.call('ZSCORE', KEYS[2], id) then
    redis.call('HSET', ARGV[1] .. 'job:' .. id, 'kind', ARGV[i + 1], 'runId', ARGV[i + 2], 'stepId', ARGV[i + 3], 'runAt', ARGV[i + 4], 'owner', '', 'claims', 0)
    redis.call('ZADD', KEYS[1], tonumber(ARGV[i + 4]), id)
    added = added + 1
  end
end
return added
`;
