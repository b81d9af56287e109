/**
 * unlock: release a lock only if this process still holds it (compare token, then delete).
 * KEYS[1] lock key; ARGV[1] token
 */
export const UNLOCK = `
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
`;
