/**
 * forget: drop jobs whose completion Postgres has committed (their rows are gone there).
 * KEYS[1] due zset, KEYS[2] leased zset
 * ARGV[1] key prefix, ARGV[2..] job ids
 * Guarantees: each job disappears from both sets and its hash, whoever holds it: the commit in
 * Postgres, not the Redis lease, decided that the job is done.
 */
export const FORGET = `
for i = 2, #ARGV do
  redis.call('ZREM', KEYS[1], ARGV[i])
  redis.call('ZREM', KEYS[2], ARGV[i])
  redis.call('DEL', ARGV[1] .. 'job:' .. ARGV[i])
end
return 1
`;
