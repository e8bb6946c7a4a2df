-- lifecycle.lua: when a turn's root is drawn, and whether it is drawn complete: the one place
-- that decides it (L.decide). turns.lua applies its verdicts (T.apply files them, T.claim hands
-- over what is due, T.settle marks what was drawn). TypeScript reads the verdicts these scripts
-- return (src/lifecycle/lifecycle.ts, Verdict). What the numbers tell is sequence.lua's.
--
-- | phase | what the events say                                       | looked at again (ms)   | then drawn as                       |
-- |-------|-----------------------------------------------------------|------------------------|-------------------------------------|
-- | open  | the turn is in progress: no end marker yet                 | last event + turnTimeout | complete=false, end=turn_timeout  |
-- | gap   | its end is known, but event.sequence numbers between its   | end seen + gapWait     | complete=false, missing_events=N    |
-- |       | user_prompt (its process's start, for a first prompt) and  |                        |                                     |
-- |       | its end are missing; or no end marker came but a newer     | new prompt seen +      | complete=false, end=new_process     |
-- |       | process of the session has begun (its own last events may  | processWait            |                                     |
-- |       | still be on their way)                                     |                        |                                     |
-- | due   | its end is known and nothing between is missing            | now                    | complete=true, end=response|error|  |
-- |       |                                                            |                        | next_prompt                         |
-- | idle  | the sender gives no evidence (no event.sequence/prompt.id) | last event + idle      | end=idle (next_prompt when one came);|
-- |       |                                                            |                        | complete is not told                |
-- | drawn | the root is in LLMFlow; later events are counted as late   | never                  | -                                   |
--
-- An end is, best first: an end marker of the main agent (mapping.ts, turnEndOf): its final
-- api_error ('error'), or an assistant_response ('response') whose request asked for no tool
-- (Claude Code logs one for every answer with text, the ones that also call tools included; a
-- tool's tool_decision and tool_result carry the request_id of the answer that called it); the
-- session's next user_prompt in the same process ('next_prompt': an interrupted turn, whose
-- range ends at that prompt); a prompt of a newer process of the session, e.g. `--resume` after
-- Claude Code was killed ('new_process': drawn a moment later, once batches queued before it
-- are processed, complete=false; its own end marker, if it comes meanwhile, wins).
--
-- The timers are the settings BRIDGE_TURN_TIMEOUT_MS (turnTimeoutMs), BRIDGE_GAP_WAIT_MS
-- (gapWaitMs) and BRIDGE_INTERACTION_IDLE_MS (idleMs). A timer that runs out while batches
-- received before it still wait in the queue waits for them (T.claim): they may hold what it
-- waits for.

--! include shard.lua
--! include sequence.lua

-- Where a turn's range starts: after its own prompt, or, for a process's first prompt, before the
-- process's first event (its start-up lands on that prompt's root). A prompt is its process's first
-- unless the session's prompt before it is numbered lower with no sign of numbering started again
-- between them (batches race: an earlier process's prompt may be the one known before it). Returns
-- the segments of numbers the turn spans, each { lo, hi, fromMs, toMs } (exclusive bounds, the time
-- they were logged in): its start-up (first prompts only), then its own (from its prompt to `hi`).
function L.segments(ix, hi, toMs)
  local promptSeq, promptAt = tonumber(ix.promptSeq), tonumber(ix.promptAt)
  local own = { promptSeq, hi, promptAt, toMs }
  if not ix.session then return { own } end
  local before = redis.call('ZREVRANGEBYSCORE', L.key('prompts', ix.session), '(' .. ix.promptAt, '-inf', 'LIMIT', 0, 1)[1]
  local fromMs = 0
  if before then
    local b = redis.call('HMGET', L.key('ix', before), 'promptSeq', 'promptAt')
    local seq, at = tonumber(b[1]), tonumber(b[2])
    if seq and at and seq < promptSeq and not L.restarted(ix.session, seq, at, promptAt) then return { own } end
    fromMs = at or 0
  end
  return { { -1, promptSeq, fromMs, promptAt }, own }
end
-- The turn's end marker, if one has come: the first by event.sequence that is an api_error or an
-- answer that called no tool (fields `end:<seq>` = kind|ms|request_id, `tool:<request_id>`).
function L.markedEnd(ix)
  local best
  for field, value in pairs(ix) do
    local seq = string.match(field, '^end:(%d+)$')
    if seq then
      local kind, at, request = string.match(value, '^(%a+)|(%d+)|(.*)$')
      local calledTools = kind == 'response' and request ~= '' and ix['tool:' .. request]
      if not calledTools and (not best or tonumber(seq) < best.seq) then
        best = { kind = kind, seq = tonumber(seq), at = tonumber(at) }
      end
    end
  end
  return best
end

-- The verdict on one interaction: its phase, when it is looked at next (ms), why it would be
-- drawn then, whether that is a timer running out, how many events are known missing, and
-- whether a root drawn now holds its whole turn (`complete`; nil when the sender gives no
-- evidence to tell by). A root is complete only when its end marker or the next prompt of its
-- process has come and no event.sequence number between is missing.
function L.decide(ix)
  local cfg, now = L.cfg, L.now
  if ix.drawn then return { phase = 'drawn' } end
  local seen = tonumber(ix.seenAt) or now
  if ix.evidence ~= '1' then
    -- Without prompt.id nothing ties an end marker to its turn: only the next prompt ends it.
    if ix.endKind then return { phase = 'due', at = now, reason = ix.endKind } end
    return { phase = 'idle', at = seen + cfg.idleMs, reason = 'idle', timer = true }
  end
  local e = L.markedEnd(ix)
  if not e and ix.endKind then e = { kind = ix.endKind, seq = tonumber(ix.endSeq), at = tonumber(ix.endAt) } end
  if not e then
    return { phase = 'open', at = seen + cfg.turnTimeoutMs, reason = 'turn_timeout', timer = true, complete = false }
  end
  local endSeen = tonumber(ix.endSeenAt) or now
  -- A next prompt numbered higher ends the turn in the same process, unless numbering started
  -- again before it: then it is a newer process's (batches race: its start-up may come later).
  if e.kind == 'next_prompt' and ix.session and ix.promptSeq
    and L.restarted(ix.session, tonumber(ix.promptSeq), tonumber(ix.promptAt), e.at) then
    e = { kind = 'new_process' }
  end
  if e.kind == 'new_process' then
    -- A newer process began, so this one is over; its own last events may still be on their way
    -- (batches race, its last export came late): a wait (BRIDGE_PROCESS_WAIT_MS), which like
    -- every timer also waits for batches queued before.
    return { phase = 'gap', at = (tonumber(ix.promptAfterSeenAt) or endSeen) + cfg.processWaitMs, reason = 'new_process', timer = true, complete = false }
  end
  if not ix.promptSeq then
    -- Its user_prompt never came: what else is missing cannot be counted.
    return { phase = 'gap', at = endSeen + cfg.gapWaitMs, reason = 'gap_timeout', timer = true, missing = -1, complete = false }
  end
  local range = L.segments(ix, e.seq, e.at or math.huge)
  local missing = 0
  for i, r in ipairs(range) do
    -- The start-up segment counts its process's start-up chain (L.chain), the own one every number.
    local covered = i < #range and #L.chain(ix.session, r[1], r[2], r[3], r[4]) or L.covered(ix.session, r[1], r[2], r[3], r[4])
    if r[2] - r[1] > 1 then missing = missing + (r[2] - r[1] - 1) - covered end
  end
  if missing <= 0 then return { phase = 'due', at = now, reason = e.kind, missing = 0, range = range, complete = true } end
  return { phase = 'gap', at = endSeen + cfg.gapWaitMs, reason = 'gap_timeout', timer = true, missing = missing, range = range, complete = false }
end

-- Verdicts this call filed (L.schedule), by key: T.claim in the same call takes them as they
-- are (L.decided), for nothing a batch writes after T.apply's last step changes what L.decide
-- reads (subagents.lua reads turns only).
local decided = {}
function L.decided(key, ix) return decided[key] or L.decide(ix) end

-- Decides, and files the interaction in the deadline index (never earlier than a running lease).
function L.schedule(key)
  local ixKey = L.key('ix', key)
  local ix = L.read(ixKey)
  -- No verdict (nil) for an expired interaction: like a drawn one, out of the index.
  local v = ix.traceId and L.decide(ix)
  if v and ix.session then
    if v.phase == 'gap' then redis.call('SADD', L.key('waiting', ix.session), key)
    else redis.call('SREM', L.key('waiting', ix.session), key) end
  end
  if not v or v.phase == 'drawn' then
    redis.call('ZREM', L.deadlines, key)
    return v
  end
  local lease = tonumber(ix.leaseUntil) or 0
  redis.call('ZADD', L.deadlines, lease > L.now and math.max(lease, v.at) or v.at, key)
  if ix.phase ~= v.phase then redis.call('HSET', ixKey, 'phase', v.phase) end
  decided[key] = v
  return v
end

-- How strong an end by a later prompt is: the same process's next prompt beats a newer process's.
local END_RANK = { next_prompt = 2, new_process = 1 }

-- Records an end by a later prompt unless a stronger (or as strong and earlier) one is known.
function L.setEnd(ixKey, kind, seq, atMs)
  local cur = redis.call('HMGET', ixKey, 'endKind', 'endSeq')
  local curRank, rank = END_RANK[cur[1]] or 0, END_RANK[kind]
  local earlier = seq and (not cur[2] or tonumber(seq) < tonumber(cur[2]))
  if rank > curRank or (rank == curRank and earlier) then
    redis.call('HSET', ixKey, 'endKind', kind, 'endAt', atMs)
    if seq then redis.call('HSET', ixKey, 'endSeq', seq) else redis.call('HDEL', ixKey, 'endSeq') end
    redis.call('HSETNX', ixKey, 'endSeenAt', L.now)
    -- When a later prompt was first seen: a newer process's waits from then (L.decide).
    redis.call('HSETNX', ixKey, 'promptAfterSeenAt', L.now)
  end
end

-- The session's prompt `key` is followed by a prompt with (nextSeq, nextAtMs).
function L.endByNextPrompt(key, nextSeq, nextAtMs)
  local ixKey = L.key('ix', key)
  local cur = redis.call('HMGET', ixKey, 'drawn', 'promptSeq', 'traceId')
  if cur[1] or not cur[3] then return false end
  if nextSeq and cur[2] and tonumber(nextSeq) > tonumber(cur[2]) then
    L.setEnd(ixKey, 'next_prompt', nextSeq, nextAtMs)
  else
    L.setEnd(ixKey, 'new_process', nil, nextAtMs)
  end
  return true
end
