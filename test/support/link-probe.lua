-- link-probe.lua: runs lua/subagents.lua's A.link on a state the test gives (appended to
-- subagents.lua's source by test/support/link-probe.ts), so its rules are tested case by case.
--
-- KEYS[1..3]  a scratch shard's keys (L.init)      ARGV[1]  JSON: { now, cfg, templates, state }
--   state: { session, calls: [AgentCall], agents: [AgentSeen], links: [[agent, AgentLink]],
--            contiguous: [agent], promptedAfter: [agent] }
-- Returns  JSON: A.link's new links, [[agent, link]]

local input = cjson.decode(ARGV[1])
L.init(KEYS, input)
local s = input.state
local function set(list)
  local out = {}
  for _, id in ipairs(list) do out[id] = true end
  return out
end
local state = { session = s.session, calls = {}, agents = {}, links = {}, taken = {}, contiguous = set(s.contiguous), promptedAfter = set(s.promptedAfter) }
for _, c in ipairs(s.calls) do state.calls[c.id] = c end
for _, a in ipairs(s.agents) do state.agents[a.id] = a end
for _, l in ipairs(s.links) do state.links[l[1]] = l[2] end
return cjson.encode(A.link(state))
