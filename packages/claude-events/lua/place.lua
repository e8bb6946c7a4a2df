-- place.lua: records which Agent call started which subagent, and hands back the held spans of
-- every subagent that can now be placed. They stay held until the caller has sent them and
-- forgets them (LifecycleStore.forgetAgentSpans): a send that fails loses nothing, and two
-- workers sending the same span send the same id, which LLMFlow keeps once.
--
-- KEYS[1]  the shard's deadline index (sorted set)      KEYS[2]  the shard's stats (hash)
-- ARGV[1]  JSON: { now, cfg, templates, sessions: [{ session, links: [[agent, json]], agents: [agent] }] }
--            links: new links to record (the first recorded for an agent, or for a call, stands);
--            agents: subagents whose held spans to hand back if they can be placed
-- Returns  JSON: [{ session, placed: {agent: { rule, key, call?, type? }}, spans: {agent: [json]} }]
--            placed: where each subagent handed back goes: the trace of prompt key `key`, under
--            Agent call `call` (none for rule `root`: under that prompt's root); `type` the
--            call's subagent_type, `prompt` its input's prompt and `first` the event.sequence of
--            the subagent's first api_request (the call that prompt was the input of), `result`
--            whether the call's tool_result has come, `inputs` the subagent's calls and tool
--            results kept (agents.lua), `caller` the agent that made the call ('' the main one)
--
-- This is the one place that decides whether a subagent can be placed, and where: once it is
-- linked to a call that is known, made by the main agent (the call's trace) or by a subagent
-- that can itself be placed (that subagent's trace); or linked to its prompt's root (rule `root`).
--! include lifecycle.lua

local input = cjson.decode(ARGV[1])
L.init(KEYS[1], KEYS[2], input)

local out = {}
for _, s in ipairs(input.sessions) do
  local callsKey, linksKey = L.key('calls', s.session), L.key('links', s.session)
  -- A link stands once recorded, per subagent and per Agent call: of two batches linking at once,
  -- the first's links stand and a call is never given to two subagents.
  local byCall = L.key('callLinks', s.session)
  for _, l in ipairs(s.links) do
    local call = cjson.decode(l[2]).call
    local taken = call ~= '' and redis.call('HGET', byCall, call)
    if not taken or taken == l[1] then
      if redis.call('HSETNX', linksKey, l[1], l[2]) == 1 and call ~= '' then redis.call('HSET', byCall, call, l[1]) end
    end
  end
  redis.call('EXPIRE', byCall, input.cfg.ttlSeconds)
  local calls, links = L.read(callsKey), L.read(linksKey)

  local function placementOf(agent, depth)
    local raw = links[agent]
    if not raw or depth > 16 then return nil end
    local link = cjson.decode(raw)
    if link.rule == 'root' then return link.key and { rule = 'root', key = link.key } or nil end
    local rawCall = calls[link.call]
    if not rawCall then return nil end
    local call = cjson.decode(rawCall)
    local key = call.key
    if call.caller and call.caller ~= '' then
      local up = placementOf(call.caller, depth + 1)
      key = up and up.key
    end
    if not key then return nil end
    return { rule = link.rule, key = key, call = link.call, type = call.type, prompt = call.prompt, result = call.r ~= nil, caller = call.caller }
  end

  local placed, spans = {}, {}
  for _, agent in ipairs(s.agents) do
    local p = placementOf(agent, 0)
    if p then
      local seen = redis.call('HGET', L.key('agents', s.session), agent)
      if seen then p.first = cjson.decode(seen).call end
      local held = L.key('agentSpans', s.session .. '/' .. agent)
      local values = redis.call('HVALS', held)
      if #values > 0 then
        p.inputs = redis.call('HVALS', L.key('agentInputs', s.session .. '/' .. agent))
        placed[agent] = p
        spans[agent] = values
      end
    end
  end
  out[#out + 1] = { session = s.session, placed = placed, spans = spans }
end
return cjson.encode(out)
