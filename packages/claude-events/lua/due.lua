-- due.lua: the timers' round in one shard (the closer's tick): roots whose time has come
-- claimed (T.claim: a timer runs out only once batches received before it are processed), held
-- background Agent calls whose wait ran out (M.due), and subagents' held spans whose lease ran
-- out or whose root was drawn a gap wait ago (A.due). The caller sends them, then commits.
--
-- KEYS[1]  the shard's deadline index (sorted set)     KEYS[2]  the shard's stats (hash)
-- KEYS[3]  the shard's held calls' deadlines (sorted set)
-- Every other key is built from ARGV[1].templates and carries KEYS[1]'s hash tag.
-- ARGV[1]  JSON: { now, cfg, templates, limit, timersDueBy, calls }   calls: look at held calls
--          and subagents too
-- Returns  the summary (L.reply): { claimed: [T.claim's rows], met: [{ session, call, span?, totals? }],
--                  placed: [{ session, agent, at, spans: [json] }] }
--! include turns.lua
--! include subagents.lua

local input = cjson.decode(ARGV[1])
L.init(KEYS, input)
local claimed = T.claim(input.limit, input.timersDueBy)
local met, placed, parts = {}, {}, {}
if input.calls then
  local members = redis.call('ZRANGEBYSCORE', L.callDeadlines, '-inf', L.now, 'LIMIT', 0, input.limit)
  met = M.due(members)
  placed, parts = A.due(members)
  for _, c in ipairs(M.put(parts)) do met[#met + 1] = c end
end
L.flush()
return L.reply({ claimed = claimed, met = met, placed = placed })
