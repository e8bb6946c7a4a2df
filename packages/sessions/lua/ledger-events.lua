-- ledger-events.lua: a batch's api_request events, added to their sessions' ledgers, each
-- event once (a batch processed twice, or sent twice, counts once).
--
-- KEYS[1]  sessions (sorted set: session → last activity, ms)
-- KEYS[2]  due (sorted set: sessions to compare → last activity, ms)
-- Per-session keys are ARGV[1] .. id (hash), .. id .. ':seen' and .. id .. ':turns' (sets), and
-- share KEYS[1]'s hash tag.
-- ARGV[1]  the prefix of per-session keys    ARGV[2]  now (ms)    ARGV[3]  seconds a session is kept
-- ARGV[4]  JSON: [{ session, id, key, t, sums: {['model|what']: n} }], `t` Unix ns (string),
--          `key` the turn it belongs to
-- Returns  how many events were new.
--! include ledger.lua

local prefix, now, ttl = ARGV[1], ARGV[2], ARGV[3]
local added = 0
for _, e in ipairs(cjson.decode(ARGV[4])) do
  local key = prefix .. e.session
  if redis.call('SADD', key .. ':seen', e.id) == 1 then
    added = added + 1
    L.add(prefix, KEYS[1], KEYS[2], e.session, 'e', e.sums, e.t, now, ttl)
    if e.key ~= '' then
      redis.call('SADD', key .. ':turns', e.key)
      if L.later(e.t, redis.call('HGET', key, 'latestTime') or '') then
        redis.call('HSET', key, 'latestTime', e.t, 'latestKey', e.key)
      end
    end
    redis.call('EXPIRE', key .. ':seen', ttl)
    redis.call('EXPIRE', key .. ':turns', ttl)
  end
end
return added
