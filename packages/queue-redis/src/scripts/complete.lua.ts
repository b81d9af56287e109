/**
 * forget: drop a job whose completion Postgres has committed (the job row is gone there).
 * KEYS[1] due zset, KEYS[2] leased zset
 * ARGV[1] key prefix, ARGV[2] job id
 * Guarantees: the job disappears from both sets and its hash, whoever holds it: the commit in
 * Postgres, not the Redis lease, decided that the job is done.
 */
export const FORGET = `
redis.call('ZREM', KEYS[1], ARGV[2])
redis.call('ZREM', KEYS[2], ARGV[2])
redis.call('DEL', ARGV[1] .. 'job:' .. ARGV[2])
return 1
`;
