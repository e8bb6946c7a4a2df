-- place.lua: records which Agent call started which subagent, and hands back the held spans of
-- every subagent that can now be placed. They stay held until the caller has sent them and
-- forgets them (LifecycleStore.forgetAgentSpans): a send that fails loses nothing, and two
-- workers sending the same span send the same id, which LLMFlow keeps once.
--
-- KEYS[1]  the shard's deadline index (sorted set)      KEYS[2]  the shard's stats (hash)
-- ARGV[1]  JSON: { now, cfg, templates, sessions: [{ session, links: [[agent, json]], agents: [agent] }] }
--            links: new links to record (the first recorded for an agent stands);
--            agents: subagents whose held spans to hand back if they can be placed
-- Returns  JSON: [{ session, calls: {id: json}, links: {id: json}, spans: {agent: [json]} }]
--
-- A subagent can be placed once it is linked to a call that is known, made by the main agent or
-- by a subagent that can itself be placed; or linked to its prompt's root (rule `root`).
--! include lifecycle.lua

local input = cjson.decode(ARGV[1])
L.init(KEYS[1], KEYS[2], input)

local out = {}
for _, s in ipairs(input.sessions) do
  local callsKey, linksKey = L.key('calls', s.session), L.key('links', s.session)
  for _, l in ipairs(s.links) do redis.call('HSETNX', linksKey, l[1], l[2]) end
  local calls, links = L.read(callsKey), L.read(linksKey)

  local function placeable(agent, depth)
    local raw = links[agent]
    if not raw or depth > 16 then return false end
    local link = cjson.decode(raw)
    if link.rule == 'root' then return true end
    local call = calls[link.call]
    if not call then return false end
    local caller = cjson.decode(call).caller
    return caller == nil or caller == '' or placeable(caller, depth + 1)
  end

  local spans = {}
  for _, agent in ipairs(s.agents) do
    if placeable(agent, 0) then
      local held = L.key('agentSpans', s.session .. '/' .. agent)
      local values = redis.call('HVALS', held)
      if #values > 0 then spans[agent] = values end
    end
  end
  out[#out + 1] = { session = s.session, calls = calls, links = links, spans = spans }
end
return cjson.encode(out)
