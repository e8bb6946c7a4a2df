-- subagents.lua: a session's subagents in their place (the rules' table is src/agents.ts's
-- header), and the main agent's Agent calls meeting their subagents' totals. Included by
-- batch.lua, commit.lua and due.lua, after L.init. Keys (keys.ts PerIdKey says what each holds):
-- a session's `calls`, `agents`, `links`, `callLinks`, `holding`, `open`; a holder's (per
-- `session/agent`, or `session/call:<id>`) `agentSpans`, `agentSent`, `agentInputs`; the shard's
-- `callDeadlines` (KEYS[3]), holders with held spans by when they are looked at again.
-- Every write merges (min, max, set-if-absent) and nothing is let go before the caller has sent
-- it (A.forget: commit.lua): a batch applied twice, or retried after a failed export, leaves the
-- same state and is handed back the same spans.
--! include held.lua

local A = {}
-- The fold target of a subagent's totals (mapping.ts AGENT_CALL): its Agent call's tool span,
-- read off the head of a held span's JSON (spans.ts heldOf writes its fold first).
local AGENT_CALL_FOLD = '{"fold":{"into":"agent_call"'

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

-- A hash's values of the fields that are `set`'s keys, by field, those present.
local function fieldsOf(key, set)
  local list, out = {}, {}
  for f in pairs(set) do list[#list + 1] = f end
  for i, v in ipairs(L.inChunks('HMGET', key, list)) do out[list[i]] = v or nil end
  return out
end

-- A hash of JSON records by id (all, or those of the set `ids`), decoded, each with its id.
local function records(key, ids)
  local out = {}
  for id, raw in pairs(ids and fieldsOf(key, ids) or L.read(key)) do
    local r = cjson.decode(raw)
    r.id = id
    out[id] = r
  end
  return out
end

-- The session's holders of spans that its batches look at again (`holding`, its member '' once it
-- lists them all: its subagents, and calls that wait for a number, hold), or nil when it does not
-- yet (a session an older bridge began): a long session has hundreds.
local function holders(session)
  local set = {}
  for _, a in ipairs(redis.call('SMEMBERS', L.key('holding', session))) do set[a] = true end
  return set[''] and set or nil
end

-- Merges a batch's records into a hash's, read already (records), and writes back those touched.
local function mergeInto(hash, current, updates, rule)
  local touched = {}
  for _, u in ipairs(updates) do
    local cur = current[u.id] or { id = u.id }
    current[u.id] = cur
    rule(cur, u)
    touched[u.id] = cur
  end
  local args = {}
  for id, r in pairs(touched) do
    r.id = nil
    args[#args + 1], args[#args + 2] = id, cjson.encode(r)
    r.id = id
  end
  L.inChunks('HSET', hash, args)
end

-- Records a link unless its subagent, or its call, is linked (the first stands): whether it did.
local function record(session, agent, link)
  local byCall = L.key('callLinks', session)
  local taken = link.call ~= '' and redis.call('HGET', byCall, link.call)
  if taken and taken ~= agent then return false end
  local added = redis.call('HSETNX', L.key('links', session), agent, cjson.encode(link)) == 1
  if added then redis.call('SREM', L.key('open', session), 'a:' .. agent, 'c:' .. link.call) end
  if added and link.call ~= '' then
    redis.call('HSET', byCall, link.call, agent)
    L.keep(byCall)
  end
  return added
end

local CALL = 'call:' -- a main-agent Agent call's holder (held.lua H.meet says what it holds)
local function isCall(holder) return string.sub(holder, 1, #CALL) == CALL end

-- Holds a part (`field`) in a call's `holder` unless it was sent already (a copy delivered again),
-- to be placed in this script (`heldNow`). Later batches of the session look again only at a span
-- that waits for a number (`holding`); the others wait for their other part, or the timers' round.
local heldNow = {}
local function hold(session, holder, field, json, when)
  local id = session .. '/' .. holder
  if redis.call('SISMEMBER', L.key('agentSent', id), field) == 1 then return end
  local key, list = L.key('agentSpans', id), L.key('holding', session)
  redis.call('HSET', key, field, json, unpack(when and { '.when', cjson.encode(when) } or {}))
  redis.call('HSETNX', key, '.since', L.now)
  if when and not when.wait then redis.call('SADD', list, holder) L.keep(list) end
  heldNow[session] = heldNow[session] or {}
  heldNow[session][holder] = true
  L.keep(key)
end

-- An older bridge held a call's parts in its session's `callSpans` (`span:<call>`, `totals:<call>`,
-- `-` once sent): moved to the call's holder before it is held into (A.merge, A.place) or when its
-- older deadline comes (A.due). Marks of calls nothing comes for again expire with the session.
local function carryOver(session, holder)
  local call, older = string.sub(holder, #CALL + 1), L.key('callSpans', session)
  local parts = redis.call('HMGET', older, 'span:' .. call, 'totals:' .. call)
  local sent = L.key('agentSent', session .. '/' .. holder)
  for i, field in ipairs({ 'span', 'totals' }) do
    if parts[i] == SENT then redis.call('SADD', sent, field) L.keep(sent)
    elseif parts[i] then hold(session, holder, field, parts[i]) end
  end
  if parts[1] or parts[2] then redis.call('HDEL', older, 'span:' .. call, 'totals:' .. call) end
end

-- A.merge(s): what a batch says about one session's subagents, merged; s = { session,
--   calls:  [{ id, caller, key, d?, r?, bg?, detail?, type?, prompt? }]   Agent tool calls: tool_use_id,
--           the calling agent ('' main), prompt key, decision and result event.sequence, its input's prompt
--   agents: [{ id, parent, key, first, last, completed?, call?, type? }]  subagents seen (call: its first api_request)
--   notes:  [[agent, call]]                  links a <task-notification> names
--   spans:  [[agent, spanId, json, when?]]   the subagents' spans, held until each is placed, and
--                                            the main agent's Agent calls' (agent `call:<id>`: hold)
--   inputs: [[agent, seq, json]] }           their calls and tool results (inputs.ts)
-- Returns the session's state: calls, agents, links (by id; those that may still link, the batch's,
-- and those holding spans), taken (calls a link took), and for subagents not yet linked,
-- contiguous (every event.sequence from its prompt to its first event has arrived, so every
-- Agent call made before it is known) and promptedAfter (a prompt numbered after its
-- subagent_completed, or until that comes its last event, has arrived, and every number before it).
function A.merge(s)
  local calls, agents, links = L.key('calls', s.session), L.key('agents', s.session), L.key('links', s.session)
  local state = { session = s.session, links = {}, contiguous = {}, promptedAfter = {}, taken = {} }
  -- Only what may still link, what the batch tells of and what holds spans is read (`open`: the
  -- subagents not linked, `a:<id>`, and calls not taken, `c:<id>`; '' once it lists them all).
  local openKey, open, ids = L.key('open', s.session), {}, { a = {}, c = {} }
  for _, m in ipairs(redis.call('SMEMBERS', openKey)) do open[m] = true end
  local holding = holders(s.session)
  if open[''] and holding then
    for m in pairs(open) do
      local kind, id = string.match(m, '^(%a):(.*)$')
      if kind then ids[kind][id] = true end
    end
    for _, c in ipairs(s.calls) do ids.c[c.id] = true end
    for _, a in ipairs(s.agents) do ids.a[a.id] = true end
    for a in pairs(holding) do ids.a[a] = true end
    state.calls, state.agents = records(calls, ids.c), records(agents, ids.a)
  else
    state.calls, state.agents = records(calls), records(agents)
  end
  mergeInto(calls, state.calls, s.calls, mergeCall)
  mergeInto(agents, state.agents, s.agents, mergeAgent)
  for _, n in ipairs(s.notes) do record(s.session, n[1], { call = n[2], rule = 'notification' }) end
  local addHolding, holdingNow = distinct()
  for _, sp in ipairs(s.spans) do
    -- A copy of a span sent already (a batch delivered twice) is not held again: a fold sent
    -- with its span would go as a row of its own (H.ready).
    local id = s.session .. '/' .. sp[1]
    if isCall(sp[1]) then
      carryOver(s.session, sp[1])
      hold(s.session, sp[1], sp[2], sp[3], sp[4])
    elseif redis.call('SISMEMBER', L.key('agentSent', id), sp[2]) == 0 then
      local held = L.key('agentSpans', id)
      redis.call('HSET', held, sp[2], sp[3])
      addHolding(sp[1])
      L.keep(held)
    end
  end
  L.inChunks('SADD', L.key('holding', s.session), holdingNow)
  for _, f in ipairs(s.inputs or {}) do
    local kept = L.key('agentInputs', s.session .. '/' .. f[1])
    redis.call('HSETNX', kept, f[2], f[3])
    L.keep(kept)
  end
  for _, k in ipairs({ calls, agents, links, L.key('holding', s.session), openKey }) do L.keep(k) end

  for id, raw in pairs(fieldsOf(links, state.agents)) do state.links[id] = cjson.decode(raw) end
  for id in pairs(fieldsOf(L.key('callLinks', s.session), state.calls)) do state.taken[id] = true end
  -- What may still link, listed (all of it the first time: a session an older bridge began).
  local listed = { '' }
  for id in pairs(state.agents) do if not state.links[id] then listed[#listed + 1] = 'a:' .. id end end
  for id in pairs(state.calls) do if not state.taken[id] then listed[#listed + 1] = 'c:' .. id end end
  L.inChunks('SADD', openKey, listed)
  for id, a in pairs(state.agents) do
    if not state.links[id] then
      local ix = redis.call('HMGET', L.key('ix', a.key), 'promptSeq', 'promptAt', 'coveredTo')
      local promptSeq, promptAt = tonumber(ix[1]), tonumber(ix[2])
      if promptSeq and promptAt then
        if a.first >= promptSeq and L.covered(s.session, promptSeq - 1, a.first + 1, promptAt, math.huge) == a.first - promptSeq + 1 then
          state.contiguous[id] = true
        end
        -- A later prompt tells only once every number up to it has come: then every Agent call
        -- made before it is known too (batches race: the prompt may come before them).
        local ended = a.completed or a.last
        -- Its turn, drawn complete, forgot its numbers: all had come up to `coveredTo` (T.settle).
        local from = tonumber(ix[3]) or promptSeq
        for _, p in ipairs(redis.call('ZRANGEBYSCORE', L.key('prompts', s.session), promptAt, '+inf')) do
          local later = redis.call('HMGET', L.key('ix', p), 'promptSeq', 'promptAt')
          local seq, at = tonumber(later[1]), tonumber(later[2])
          if seq and at and seq > ended and L.covered(s.session, from, seq, promptAt, at) == seq - from - 1 then
            state.promptedAfter[id] = true break -- one such prompt tells
          end
        end
      end
    end
  end
  return state
end

-- A.link(state): the links the evidence now supports (the rules of src/agents.ts's table, in
-- that order), for subagents not yet linked, recorded. Exact evidence first, so that what it
-- takes is no longer open for the others. Returns the new links ([[agent, link]]).
function A.link(state)
  local taken, linked, out = state.taken, {}, {}
  for _, l in pairs(state.links) do if l.call and l.call ~= '' then taken[l.call] = true end end
  local function link(agent, l)
    if record(state.session, agent, l) then out[#out + 1] = { agent, l } end
    linked[agent] = true
    if l.call ~= '' then taken[l.call] = true end
  end
  local function unlinked()
    local list = {}
    for id, a in pairs(state.agents) do if not state.links[id] and not linked[id] then list[#list + 1] = a end end
    table.sort(list, function(x, y) if x.first ~= y.first then return x.first < y.first end return x.id < y.id end)
    return list
  end
  -- The calls its caller made that may have started it (the main agent's: in its prompt).
  local function callsOf(a)
    local list = {}
    for _, c in pairs(state.calls) do
      if c.caller == a.parent and not taken[c.id] and (a.parent ~= '' or c.key == a.key) then list[#list + 1] = c end
    end
    table.sort(list, function(x, y) return x.id < y.id end)
    return list
  end
  for _, a in ipairs(unlinked()) do
    if a.completed then
      for _, c in ipairs(callsOf(a)) do
        if not c.bg and c.r == a.completed + 1 then
          link(a.id, { call = c.id, rule = 'completion' })
          break
        end
      end
    end
  end
  for _, a in ipairs(unlinked()) do
    local mine, open = callsOf(a), {}
    -- A background call returns at once: open until linked; so is one whose input is unreadable.
    for _, c in ipairs(mine) do
      if c.d and c.d < a.first and (c.bg or not c.detail or c.r == nil or c.r > a.last) then open[#open + 1] = c end
    end
    if state.contiguous[a.id] and #open == 1 then
      link(a.id, { call = open[1].id, rule = 'only_open' })
    else
      -- Nothing more will tell: it finished and a later prompt came (a notification would have
      -- named it), or it stopped before finishing (no subagent_completed: it failed) while only
      -- foreground calls could have started it, and the session went on to another prompt.
      local finished = a.completed ~= nil
      if not finished and #mine > 0 then
        finished = true
        for _, c in ipairs(mine) do if not c.detail or c.bg then finished = false end end
      end
      if state.promptedAfter[a.id] and finished then link(a.id, { call = '', rule = 'root', key = a.key }) end
    end
  end
  return out
end

-- Where a linked subagent goes: the trace of prompt key `key`, under Agent call `call` (none for
-- rule `root`: under that prompt's root), once its call is known and made by the main agent or
-- by a subagent that can itself be placed. This is the one place that decides it.
local function placementOf(calls, links, agent, depth)
  local raw = links[agent]
  if not raw or depth > 16 then return nil end
  local link = cjson.decode(raw)
  if link.rule == 'root' then return link.key and { rule = 'root', key = link.key } or nil end
  local rawCall = calls[link.call]
  if not rawCall then return nil end
  local call = cjson.decode(rawCall)
  local key = call.key
  if call.caller and call.caller ~= '' then
    local up = placementOf(calls, links, call.caller, depth + 1)
    key = up and up.key
  end
  if not key then return nil end
  return { rule = link.rule, key = key, call = link.call, type = call.type, prompt = call.prompt, result = call.r ~= nil, caller = call.caller }
end

-- A holder with held spans in the shard's `callDeadlines`, looked at again by the timers' round.
local function agentMember(session, agent) return '\t' .. session .. '\t' .. agent end

-- A.place(session, agents, owner, placed): for each of the session's subagents (`agents`, by id)
-- that can be placed, then each of its calls' holders, that holds spans that may go (held.lua:
-- H.ready, H.meet) and are not leased to another owner: where it goes (`at`: rule, key, call?, type?,
-- prompt?, first: the event.sequence of its first LLM call, result: whether its call's
-- tool_result came, inputs: its calls and tool results kept, caller: '' when the main agent made
-- the call; a call's holder: { call }) and those spans (JSON), appended to `placed`. Its totals (a
-- fold onto its Agent call) placed under a call of the main agent move to that call's holder.
function A.place(session, agents, owner, placed)
  local calls, links
  local holding, list = holders(session), L.key('holding', session)
  if not holding then redis.call('SADD', list, '') L.keep(list) end
  local function place(agent, seen)
    local key = L.key('agentSpans', session .. '/' .. agent)
    local call = isCall(agent)
    -- Most hold nothing (sent and forgotten): not placed (A.due drops a member left for one).
    local all = (call or not holding or holding[agent]) and redis.call('HGETALL', key) or {}
    local held, leases, meta, has, spans, ids, left = {}, {}, {}, {}, {}, {}, false
    for i = 1, #all, 2 do
      local f, v = all[i], all[i + 1]
      if string.sub(f, 1, #LEASE) == LEASE then leases[string.sub(f, #LEASE + 1)] = v
      elseif string.sub(f, 1, 1) == '.' then meta[f] = v
      else held[#held + 1], held[#held + 2], has[f] = f, v, true end
    end
    if #held == 0 then
      if #all > 0 then redis.call('DEL', key) end
      if call or not holding or holding[agent] then redis.call('SREM', list, agent) end
      return
    end
    if not holding and not call then redis.call('SADD', list, agent) end
    if not calls then calls, links = L.fields(L.key('calls', session)), L.fields(L.key('links', session)) end
    local at = call and { call = string.sub(agent, #CALL + 1) } or placementOf(calls, links, agent, 0)
    if not at then return end
    at.first = seen.call
    local goes, later
    if call then goes, later = H.meet(session, agent, meta, has, function(id) return H.free(leases[id], owner) end)
    else goes, later = H.ready(session, agent, at, held) end
    local leasing = {}
    for i = 1, #held, 2 do
      local id, json = held[i], held[i + 1]
      if at.caller == '' and at.call and string.sub(json, 1, #AGENT_CALL_FOLD) == AGENT_CALL_FOLD then
        carryOver(session, CALL .. at.call)
        hold(session, CALL .. at.call, 'totals', cjson.encode({ agent = agent, at = at, held = json }))
        redis.call('HDEL', key, id, LEASE .. id)
      elseif goes(id, json) and H.free(leases[id], owner) then
        spans[#spans + 1], ids[#ids + 1] = json, id
        leasing[#leasing + 1], leasing[#leasing + 2] = LEASE .. id, (L.now + L.cfg.leaseMs) .. '|' .. owner
      else
        left = true
      end
    end
    L.inChunks('HSET', key, leasing)
    -- Looked at again once a lease may run out, or when `later` lets everything go (H.ready,
    -- H.meet); batches of the session look sooner (A.revisit).
    local member = agentMember(session, agent)
    if #spans > 0 or left then
      local leased = next(leases) ~= nil or #spans > 0
      redis.call('ZADD', L.callDeadlines, 'LT', leased and L.now + L.cfg.leaseMs or later, member)
    else
      redis.call('ZREM', L.callDeadlines, member)
    end
    if #spans > 0 then
      if not call then at.inputs = redis.call('HVALS', L.key('agentInputs', session .. '/' .. agent)) end
      placed[#placed + 1] = { session = session, agent = agent, at = at, spans = spans, ids = ids }
    end
  end
  local callHolders = {}
  for agent, seen in pairs(agents) do
    if isCall(agent) then callHolders[agent] = true else place(agent, seen) end
  end
  -- Then the calls' holders: those asked for, held into (the totals just moved there meet their
  -- span) or waiting for a number.
  for agent in pairs(heldNow[session] or {}) do callHolders[agent] = true end
  for agent in pairs(holding or holders(session) or {}) do
    if isCall(agent) then callHolders[agent] = true end
  end
  for agent in pairs(callHolders) do place(agent, {}) end
end

-- A.forget(sent): [{ session, agent, spanIds, leased }]: what the caller sent (spanIds) of what it
-- was handed (leased) is no longer held and is noted sent (`agentSent`: a copy delivered again is
-- not held again, a fold after its span goes as its own row); the rest is free again.
function A.forget(sent)
  for _, s in ipairs(sent) do
    local id = s.session .. '/' .. s.agent
    local fields = { unpack(s.spanIds) }
    for _, span in ipairs(s.leased or {}) do fields[#fields + 1] = LEASE .. span end
    local key = L.key('agentSpans', id)
    if #fields > 0 then redis.call('HDEL', key, unpack(fields)) end
    -- What is still held may go now (a batch that came meanwhile was refused it while leased):
    -- the next timers' round looks (A.due). A call's holder with neither part left is let go.
    local call = isCall(s.agent) and redis.call('HMGET', key, 'span', 'totals')
    if call and not call[1] and not call[2] then
      redis.call('DEL', key)
      redis.call('ZREM', L.callDeadlines, agentMember(s.session, s.agent))
    elseif redis.call('EXISTS', key) == 1 then
      redis.call('ZADD', L.callDeadlines, 'LT', L.now, agentMember(s.session, s.agent))
    end
    if #s.spanIds > 0 then
      redis.call('SADD', L.key('agentSent', id), unpack(s.spanIds))
      L.keep(L.key('agentSent', id))
    end
  end
end

-- A.revisit(session, owner, placed): A.place for every holder of a session a batch touched without
-- telling of its subagents: a number it brought may be the one a held span waits for.
function A.revisit(session, owner, placed)
  local holding = holders(session)
  local any = not holding
  for h in pairs(holding or {}) do any = any or h ~= '' end
  if any then A.place(session, records(L.key('agents', session), holding), owner, placed) end
end

-- A.due(members): the shard's due `callDeadlines` holders, placed again by the timers' round
-- (leases ran out, or H.ready or H.meet lets all go); an older bridge's `session<TAB>call`, its call's.
function A.due(members)
  local placed = {}
  for _, m in ipairs(members) do
    redis.call('ZREM', L.callDeadlines, m)
    local session, agent = string.match(m, '^\t(.*)\t(.*)$')
    local older, call = string.match(m, '^([^\t].*)\t(.*)$')
    if older then
      session, agent = older, CALL .. call
      carryOver(session, agent)
    end
    local raw = session and not isCall(agent) and redis.call('HGET', L.key('agents', session), agent)
    if raw or (session and isCall(agent)) then A.place(session, { [agent] = raw and cjson.decode(raw) or {} }, '', placed) end
  end
  return placed
end
