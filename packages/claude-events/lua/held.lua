-- held.lua: when a held span goes, the one place that says it for every span the bridge holds. A
-- turn's `events` (turns.lua) go with its root, when lifecycle.lua says, or at once once it is
-- drawn (H.releasable); a start-up span in `pending` joins the turn of the first later prompt of
-- its own process (H.sameProcess, turns.lua adopt); a subagent's `agentSpans` go once it is placed
-- and nothing may still fold into them (H.ready, subagents.lua A.place); an Agent call's tool span
-- and its subagent's totals go together, or each once the other cannot come (H.meet). Nothing
-- handed back goes twice (a lease: H.free). src/outcome.ts tables what goes and how it is committed.
--! include lifecycle.lua

local H = {}

-- Whether a held span goes alone once its root is drawn: not if sent, nor if it stands in for one to come.
function H.releasable(json) return json ~= SENT and string.sub(json, 1, 15) ~= '{"standIn":true' end

-- Whether a start-up span belongs to the process of `prompt`, the first prompt logged after it:
-- it is in that prompt's start-up chain (L.chain; a resumed session's processes each number from 0,
-- and a later process's prompt may come first). A prompt claimed or drawn complete adopted its own
-- start-up already: a span found now is another process's. A span without a number (older Claude
-- Code), or one left once that prompt was drawn longer than the gap wait ago, goes to it.
function H.sameProcess(session, seq, ms, prompt, chains)
  local ix = redis.call('HMGET', L.key('ix', prompt), 'promptSeq', 'promptAt', 'drawnAt', 'leaseUntil', 'coveredTo', 'leaseComplete')
  local promptSeq, promptAt, drawnAt = tonumber(ix[1]), tonumber(ix[2]), tonumber(ix[3])
  if not seq or not promptSeq or not promptAt then return true end
  local lastResort = drawnAt ~= nil and L.now - drawnAt > L.cfg.gapWaitMs
  if (drawnAt and ix[5]) or ((tonumber(ix[4]) or 0) > L.now and ix[6] == '1') then return lastResort end
  -- The prompt's whole start-up chain, walked once per adopt (the numbers do not change meanwhile).
  if not chains[prompt] then
    chains[prompt] = {}
    for _, m in ipairs(L.chain(session, -1, promptSeq, 0, promptAt)) do chains[prompt][m] = true end
  end
  return chains[prompt][seq .. ':' .. ms] or lastResort
end

-- A main-agent Agent call's holder (`call:<tool_use_id>`) holds its tool span (`span`) and its
-- subagent's totals (`totals`, moved there when the subagent is placed), beside `.since` (when the
-- first came) and `.when` (the span's wait). They go together once both are here; the span alone
-- once it does not wait for them: a background call's waits (it returns at once, "async_launched");
-- a foreground call's totals are logged just before its tool_result, so once the number before
-- that (`result`, its mark, logged since `from`) has come they came or never will. Totals go alone
-- once the span went without them (a row of their own); all goes once the turn timeout ran out.
function H.meet(session, holder, meta, has, free)
  local since = tonumber(meta['.since']) or L.now
  local late = L.now >= since + L.cfg.turnTimeoutMs
  local when = cjson.decode(meta['.when'] or '{"wait":true}')
  local span, totals = has.span and free('span'), has.totals and free('totals')
  local alone = not when.wait and (not when.result or L.precedes(session, when.result, when.from))
  local spanSent = not has.span and redis.call('SISMEMBER', L.key('agentSent', session .. '/' .. holder), 'span') == 1
  local goes = { span = late or totals or alone, totals = late or span or spanSent }
  return function(id) return goes[id] end, since + L.cfg.turnTimeoutMs
end

-- Which of a placed subagent's held spans may go now, and when to look again if some stay. A span
-- goes once nothing may still fold into it: an LLM call whose answer may still come (`waitsAfter`,
-- its mark) once the number after it came from its process (L.follows); a fold with its span, or
-- once that was sent (as its own row). Once its turn's root was drawn longer than the gap wait ago,
-- all goes (a background subagent outlives its turn: what was awaited is taken as lost).
function H.ready(session, agent, at, held)
  local ix = redis.call('HMGET', L.key('ix', at.key), 'drawnAt', 'coveredTo')
  local drawnAt, coveredTo = tonumber(ix[1]), tonumber(ix[2]) or -1
  local later = (drawnAt or L.now) + L.cfg.gapWaitMs + 1
  if drawnAt and L.now - drawnAt > L.cfg.gapWaitMs then return function() return true end, later end
  local sent = L.key('agentSent', session .. '/' .. agent)
  local going = {}
  for i = 1, #held, 2 do
    -- Its turn drawn complete had every number up to its end (T.settle forgot them then).
    -- Found by plain search: a body is KBs, and a pattern is tried at every position (10x slower).
    local from = select(2, string.find(held[i + 1], '"waitsAfter":"', 1, true))
    local waits = from and string.match(held[i + 1], '^(%d+:%d+)"', from + 1)
    going[held[i]] = not waits or tonumber(string.match(waits, '^%d+')) < coveredTo or L.follows(session, waits)
  end
  return function(id, json)
    local into = string.match(json, '^{"fold":{"into":"([^"]+)"')
    if not into then return going[id] end
    if into == 'root' or into == 'agent_call' then return true end
    if going[into] ~= nil then return going[into] end
    return redis.call('SISMEMBER', sent, into) == 1
  end, later
end

-- A held span handed back is leased (`lease:<id>` in its holder: until|owner) to the batch, or the
-- timers' round, that took it: no other takes it meanwhile (it would go twice), the same batch
-- retried takes it again, and the timers' round (A.due) hands it back if its lease ends uncommitted.
local LEASE = 'lease:'
function H.free(lease, owner)
  if not lease then return true end
  local untilMs, by = string.match(lease, '^(%d+)|(.*)$')
  return tonumber(untilMs) <= L.now or (owner ~= '' and by == owner)
end
