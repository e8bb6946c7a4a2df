-- due.lua: the timers' round in one shard (the closer's tick): roots whose time has come
-- claimed (T.claim: a timer runs out only once batches received before it are processed), and
-- held spans of subagents and Agent calls whose lease or wait ran out (A.due). The caller sends
-- them, then commits.
--
-- KEYS[1]  the shard's deadline index (sorted set)     KEYS[2]  the shard's stats (hash)
-- KEYS[3]  the shard's held spans' deadlines (sorted set)
-- Every other key is built from ARGV[1].templates and carries KEYS[1]'s hash tag.
-- ARGV[1]  JSON: { now, cfg, templates, limit, timersDueBy, held }   held: look at held spans
--          too (subagents' and calls')
-- Returns  the summary (L.reply): { claimed: [T.claim's rows], placed: [{ session, agent, at, spans: [json] }] }
--! include turns.lua
--! include subagents.lua

local input = cjson.decode(ARGV[1])
L.init(KEYS, input)
local claimed = T.claim(input.limit, input.timersDueBy)
local placed = input.held and A.due(redis.call('ZRANGEBYSCORE', L.callDeadlines, '-inf', L.now, 'LIMIT', 0, input.limit)) or {}
L.flush()
return L.reply({ claimed = claimed, placed = placed })
