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
local new, turns, latest, order = {}, {}, {}, {}
for _, e in ipairs(cjson.decode(ARGV[4])) do
  local key = prefix .. e.session
  if redis.call('SADD', key .. ':seen', e.id) == 1 then
    new[#new + 1] = e
    if not turns[e.session] then
      turns[e.session] = {}
      order[#order + 1] = e.session
    end
    -- The turns its events named, and its latest turn.
    if e.key ~= '' then
      table.insert(turns[e.session], e.key)
      local l = latest[e.session]
      if not l or L.later(e.t, l[1]) then latest[e.session] = { e.t, e.key } end
    end
  end
end
L.addEach(prefix, KEYS[1], KEYS[2], 'e', new, now, ttl)
for _, session in ipairs(order) do
  local key, l = prefix .. session, latest[session]
  if l then
    local named = turns[session]
    -- In chunks: unpack takes a bounded number of arguments.
    for i = 1, #named, 400 do redis.call('SADD', key .. ':turns', unpack(named, i, math.min(i + 399, #named))) end
    redis.call('EXPIRE', key .. ':turns', ttl)
    if L.later(l[1], redis.call('HGET', key, 'latestTime') or '') then
      redis.call('HSET', key, 'latestTime', l[1], 'latestKey', l[2])
    end
  end
  redis.call('EXPIRE', key .. ':seen', ttl)
end
return #new
