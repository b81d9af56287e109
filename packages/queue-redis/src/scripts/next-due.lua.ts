/**
 * next-due: when the next job becomes claimable: the earliest due time or lease expiry.
 * KEYS[1] due zset, KEYS[2] leased zset
 * Returns [earliest ms or -1, Redis now ms], so the caller can correct for clock skew.
 */
export const NEXT_DUE = `
local now = redis.call('TIME')
local nowMs = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local best = -1
for _, key in ipairs(KEYS) do
  local first = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
  if first[2] and (best < 0 or tonumber(first[2]) < best) then best = tonumber(first[2]) end
end
return { tostring(best), tostring(nowMs) }
`;
