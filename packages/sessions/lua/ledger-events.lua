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
-- The new events of each session, summed: its ledger is written once per batch, not per event.
local bySession, order = {}, {}
for _, e in ipairs(cjson.decode(ARGV[4])) do
  local key = prefix .. e.session
  if redis.call('SADD', key .. ':seen', e.id) == 1 then
    added = added + 1
    local s = bySession[e.session]
    if not s then
      s = { sums = {}, first = e.t, last = e.t, turns = {} }
      bySession[e.session] = s
      order[#order + 1] = e.session
    end
    for slot, n in pairs(e.sums) do s.sums[slot] = (s.sums[slot] or 0) + n end
    if L.later(s.first, e.t) then s.first = e.t end
    if L.later(e.t, s.last) then s.last = e.t end
    if e.key ~= '' then
      s.turns[#s.turns + 1] = e.key
      if not s.latest or L.later(e.t, s.latest[1]) then s.latest = { e.t, e.key } end
    end
  end
end
for _, session in ipairs(order) do
  local s, key = bySession[session], prefix .. session
  L.add(prefix, KEYS[1], KEYS[2], session, 'e', s.sums, s.first, now, ttl, s.last)
  if #s.turns > 0 then
    redis.call('SADD', key .. ':turns', unpack(s.turns))
    if L.later(s.latest[1], redis.call('HGET', key, 'latestTime') or '') then
      redis.call('HSET', key, 'latestTime', s.latest[1], 'latestKey', s.latest[2])
    end
    redis.call('EXPIRE', key .. ':turns', ttl)
  end
  redis.call('EXPIRE', key .. ':seen', ttl)
end
return added
