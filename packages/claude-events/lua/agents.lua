-- agents.lua: what one batch says about the subagents of a shard's sessions, with their spans
-- held until each subagent is placed under the Agent call that started it (place.lua).
--
-- KEYS[1]  the shard's deadline index (sorted set)      KEYS[2]  the shard's stats (hash)
-- Every other key is built from ARGV[1].templates (keys.ts) and shares KEYS[1]'s hash tag.
-- ARGV[1]  JSON: { now, cfg, templates, sessions: [{ session,
--            calls:  [{ id, caller, key, d?, r?, bg?, type?, prompt? }],   Agent tool calls: tool_use_id,
--                                                                 the calling agent ('' main), prompt key,
--                                                                 decision and result event.sequence,
--                                                                 the input's prompt (cut)
--            agents: [{ id, parent, key, first, last, completed?, call?, type? }]   subagents seen
--                                                                 (call: its first api_request)
--            notes:  [[agent, call]],                             links a <task-notification> names
--            spans:  [[agent, spanId, json]],                     the subagents' spans, to hold
--            inputs: [[agent, seq, json]] }] }                    their calls and tool results (inputs.ts)
-- Returns  JSON: [{ session, calls: {id: json}, agents: {id: json}, links: {id: json},
--                   contiguous: {agent: true}, promptedAfter: {agent: true} }]
--   contiguous: every event.sequence from the subagent's prompt to its first event has arrived
--   (so every Agent call made before it is known); promptedAfter: a prompt numbered after its
--   subagent_completed (or, until that comes, its last event) has arrived.
--
-- Every write merges (min, max, set-if-absent), so a batch applied twice leaves the same state.
--! include lifecycle.lua

local input = cjson.decode(ARGV[1])
L.init(KEYS[1], KEYS[2], input)
local ttl = input.cfg.ttlSeconds
local FAR = 9007199254740991

local function merged(hash, field, update, rule)
  local raw = redis.call('HGET', hash, field)
  local cur = raw and cjson.decode(raw) or {}
  rule(cur, update)
  redis.call('HSET', hash, field, cjson.encode(cur))
end

local function lower(a, b) if a == nil then return b elseif b == nil then return a else return math.min(a, b) end end

local function mergeCall(cur, u)
  cur.caller = cur.caller or u.caller
  cur.key = cur.key or u.key
  cur.d = lower(cur.d, u.d)
  cur.r = lower(cur.r, u.r)
  cur.bg = cur.bg or u.bg
  cur.detail = cur.detail or u.detail
  cur.type = cur.type or u.type
  cur.prompt = cur.prompt or u.prompt
end

local function mergeAgent(cur, u)
  if cur.first == nil or u.first < cur.first then cur.first, cur.key = u.first, u.key end
  cur.last = math.max(cur.last or u.last, u.last)
  cur.completed = lower(cur.completed, u.completed)
  cur.call = lower(cur.call, u.call)
  cur.parent = cur.parent or u.parent
  cur.type = cur.type or u.type
end

local out = {}
for _, s in ipairs(input.sessions) do
  local calls, agents, links = L.key('calls', s.session), L.key('agents', s.session), L.key('links', s.session)
  for _, c in ipairs(s.calls) do merged(calls, c.id, c, mergeCall) end
  for _, a in ipairs(s.agents) do merged(agents, a.id, a, mergeAgent) end
  for _, n in ipairs(s.notes) do redis.call('HSETNX', links, n[1], cjson.encode({ call = n[2], rule = 'notification' })) end
  for _, sp in ipairs(s.spans) do
    local held = L.key('agentSpans', s.session .. '/' .. sp[1])
    redis.call('HSET', held, sp[2], sp[3])
    redis.call('EXPIRE', held, ttl)
  end
  for _, f in ipairs(s.inputs or {}) do
    local kept = L.key('agentInputs', s.session .. '/' .. f[1])
    redis.call('HSETNX', kept, f[2], f[3])
    redis.call('EXPIRE', kept, ttl)
  end
  for _, k in ipairs({ calls, agents, links }) do redis.call('EXPIRE', k, ttl) end

  local state = { session = s.session, calls = L.read(calls), agents = L.read(agents), links = L.read(links), contiguous = {}, promptedAfter = {} }
  for id, raw in pairs(state.agents) do
    if not state.links[id] then
      local a = cjson.decode(raw)
      local ix = redis.call('HMGET', L.key('ix', a.key), 'promptSeq', 'promptAt')
      local promptSeq, promptAt = tonumber(ix[1]), tonumber(ix[2])
      if promptSeq and promptAt and a.first >= promptSeq then
        local want = a.first - promptSeq + 1
        if L.covered(s.session, promptSeq - 1, a.first + 1, promptAt, FAR) == want then state.contiguous[id] = true end
      end
      local ended = a.completed or a.last
      if promptAt then
        for _, p in ipairs(redis.call('ZRANGEBYSCORE', L.key('prompts', s.session), promptAt, '+inf')) do
          local seq = tonumber(redis.call('HGET', L.key('ix', p), 'promptSeq'))
          if seq and seq > ended then state.promptedAfter[id] = true end
        end
      end
    end
  end
  out[#out + 1] = state
end
return cjson.encode(out)
