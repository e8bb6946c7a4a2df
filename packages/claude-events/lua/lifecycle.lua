-- lifecycle.lua: when a turn's root is drawn, and whether it is drawn complete: the one place
-- that decides it (L.decide). turns.lua applies its verdicts (T.apply files them, T.claim hands
-- over what is due, T.settle marks what was drawn); subagents.lua uses its helpers only (L.key,
-- L.read, L.covered). TypeScript reads the verdicts these scripts return (src/lifecycle/
-- lifecycle.ts, Verdict).
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

local L = { now = 0, cfg = {}, templates = {}, deadlines = '', stats = '', callDeadlines = '' }
-- What a held span's entry becomes once it is sent (interaction.ts SENT), for the scripts that include this.
local SENT = '-'

-- The shard's declared keys (its deadline index, its stats, its held calls' deadlines) and the
-- script's input (now, cfg, templates).
function L.init(keys, input)
  L.deadlines, L.stats, L.callDeadlines = keys[1], keys[2], keys[3]
  L.now, L.cfg, L.templates = tonumber(input.now), input.cfg, input.templates
end

-- Span bodies (JSON text) travel as arguments and reply items of their own, not escaped inside
-- the JSON input and summary: in the input, each place that holds one holds its index (ARGV[1 +
-- i]; store.ts withBodyRefs names the places: sessions[].spans[][3], updates[].held[][2] unless
-- SENT, updates[].prompt, pending[].span, calls[].json); L.bodies puts them back. L.reply hands
-- back the summary (reply item 1) and the bodies it holds, each named by its index in the reply
-- (store.ts bodiesIn): release[][2], placed[].spans[], met[] (due.lua: calls[]) .span and
-- .totals, claimed[].events (every second item, unless SENT), claimed[].state .prompt and
-- .completion.
function L.bodies(input, argv)
  for _, s in ipairs(input.sessions or {}) do
    for _, sp in ipairs(s.spans) do sp[3] = argv[1 + sp[3]] end
  end
  for _, u in ipairs(input.updates or {}) do
    if u.prompt then u.prompt = argv[1 + u.prompt] end
    for _, h in ipairs(u.held or {}) do if h[2] ~= SENT then h[2] = argv[1 + h[2]] end end
  end
  for _, p in ipairs(input.pending or {}) do p.span = argv[1 + p.span] end
  for _, c in ipairs(input.calls or {}) do c.json = argv[1 + c.json] end
  return input
end
function L.reply(out)
  local reply = { '' }
  local function ref(body)
    reply[#reply + 1] = body
    return #reply
  end
  for _, r in ipairs(out.release or {}) do r[2] = ref(r[2]) end
  for _, p in ipairs(out.placed or {}) do
    for j, body in ipairs(p.spans) do p.spans[j] = ref(body) end
  end
  for _, m in ipairs(out.met or out.calls or {}) do
    if m.span then m.span = ref(m.span) end
    if m.totals then m.totals = ref(m.totals) end
  end
  for _, c in ipairs(out.claimed or {}) do
    for _, f in ipairs({ 'prompt', 'completion' }) do if c.state[f] then c.state[f] = ref(c.state[f]) end end
    for j = 2, #c.events, 2 do
      if c.events[j] ~= SENT then c.events[j] = ref(c.events[j]) end
    end
  end
  reply[1] = cjson.encode(out)
  return reply
end

-- A per-id key of this shard (the templates come from keys.ts).
function L.key(kind, id)
  local t = L.templates[kind]
  return t[1] .. id .. t[2]
end

-- A hash's fields, each read when first asked for (false when absent): a long session's are many.
function L.fields(key)
  return setmetatable({}, { __index = function(t, f)
    t[f] = redis.call('HGET', key, f) or false
    return t[f]
  end })
end

function L.read(key)
  local flat = redis.call('HGETALL', key)
  local out = {}
  for i = 1, #flat, 2 do out[flat[i]] = flat[i + 1] end
  return out
end

-- A function that adds an item to a list unless it is there already, and that list (in the
-- order first added).
local function distinct()
  local seen, list = {}, {}
  return function(item)
    if not seen[item] then
      seen[item] = true
      list[#list + 1] = item
    end
  end, list
end

-- Keys this call wrote, told the shard's TTL once, when the call ends (L.flush): a key written
-- for each event of a batch is not sent an EXPIRE for each. Every script calls L.flush last.
local keep, kept = distinct()
L.keep = keep
function L.flush()
  for _, k in ipairs(kept) do redis.call('EXPIRE', k, L.cfg.ttlSeconds) end
end

-- Calls fn with `list` in chunks of at most n items, in order (unpack's limit on arguments).
function L.each(list, n, fn)
  for i = 1, #list, n do fn({ unpack(list, i, math.min(i + n - 1, #list)) }) end
end

-- A session's event.sequence marks (`sequenceAt`): scored by the ms each was logged at, the member
-- its number zero-padded ':' that ms (one millisecond's marks come by number), so a turn's window
-- is read without every process's numbers: a resumed session keeps each one's start-up. An older
-- bridge kept them by number (`sequence`, members `seq:ms`): moved over when first looked at.
local indexed = {}
function L.times(session)
  local k, older = L.key('sequenceAt', session), L.key('sequence', session)
  if not indexed[session] then
    indexed[session] = true
    if redis.call('EXISTS', older) == 1 then
      L.addMarks(session, redis.call('ZRANGE', older, 0, -1))
      redis.call('DEL', older)
    end
  end
  return k
end

-- A mark's number, its ms and itself as `seq:ms`, from `seq:ms` or a member of `sequenceAt`.
local function parseMark(m)
  local seq, ms = string.match(m, '^(%d+):(%d+)$')
  if seq then return tonumber(seq), tonumber(ms), tonumber(seq) .. ':' .. ms end
end

-- Adds marks (`seq:ms`) to the session's, or removes them (`forget`).
function L.addMarks(session, marks, forget)
  local args, k = {}, L.times(session)
  for _, m in ipairs(marks) do
    local seq, ms = string.match(m, '^(%d+):(%d+)$')
    if seq and not forget then args[#args + 1] = ms end
    if seq then args[#args + 1] = string.format('%012d:%s', seq, ms) end
  end
  L.each(args, 400, function(chunk) redis.call(forget and 'ZREM' or 'ZADD', k, unpack(chunk)) end)
  L.keep(k)
end

-- Marks of the session logged from fromMs to toMs, each as { seq, ms, `seq:ms` }.
function L.between(session, fromMs, toMs)
  local out = {}
  for _, m in ipairs(redis.call('ZRANGEBYSCORE', L.times(session), fromMs, toMs)) do out[#out + 1] = { parseMark(m) } end
  return out
end

-- Distinct sequence numbers strictly between lo and hi seen in the session and logged between
-- fromMs and toMs. The time window keeps another process of the same session (a resumed one,
-- which numbers from 0 again) from filling this one's gaps: Claude Code takes an event's
-- number and its timestamp together, so within one process both grow together.
function L.covered(session, lo, hi, fromMs, toMs)
  -- Without a session (its id was not a string) no number can be looked up: none is covered.
  if not session or hi - lo <= 1 then return 0 end
  local seen, n, offset = {}, 0, 0
  repeat -- oldest first, a page at a time, until every number is found
    local page = redis.call('ZRANGEBYSCORE', L.times(session), fromMs, toMs, 'LIMIT', offset, 64)
    for _, m in ipairs(page) do
      local seq = parseMark(m)
      if seq > lo and seq < hi and not seen[seq] then
        seen[seq], n = true, n + 1
        if n == hi - lo - 1 then return n end
      end
    end
    offset = offset + 64
  until #page < 64
  return n
end

-- A process's start-up chain before its prompt numbered hi and logged at toMs: the numbers
-- logged last before it, in order down from hi-1 with no other number between, down to lo+1
-- (fromMs: no earlier than the prompt before it, of an earlier process). Returns their marks
-- ("seq:ms"). Counting the numbers of a window alone would let another process's start-up, in
-- the window while the prompts between are still on their way, fill this one's gaps.
function L.chain(session, lo, hi, fromMs, toMs)
  local out, want, offset = {}, hi - 1, 0
  if not session or hi - lo <= 1 then return out end
  repeat -- newest first, a page at a time, up to where the chain ends
    local page = redis.call('ZREVRANGEBYSCORE', L.times(session), toMs, fromMs, 'LIMIT', offset, 64)
    for _, p in ipairs(page) do
      local seq, ms, mark = parseMark(p)
      -- Its prompt, and what it logged in the same millisecond after it, are no start-up.
      if ms < toMs or seq < hi then
        if seq == want then
          out[#out + 1] = mark
          want = want - 1
          if want <= lo then return out end
        elseif seq ~= want + 1 then
          return out
        end
      end
    end
    offset = offset + 64
  until #page < 64
  return out
end

-- Whether the number right after an event's (its mark, "seq:ms") has come from its own process:
-- a mark numbered seq+1 whose latest mark numbered seq before it, from ms on, is this one. Resumed processes
-- of a session each number from 0: the same number from another one does not tell.
function L.follows(session, mark)
  local seq, ms = parseMark(mark)
  local same, after = {}, {}
  for _, m in ipairs(L.between(session, ms, '+inf')) do
    if m[1] == seq then same[#same + 1] = { m[2], m[3] } elseif m[1] == seq + 1 then after[#after + 1] = m[2] end
  end
  for _, t in ipairs(after) do
    local latest
    for _, x in ipairs(same) do
      if x[1] <= t and (not latest or x[1] > latest[1]) then latest = x end
    end
    if latest and latest[2] == mark then return true end
  end
  return false
end

-- Whether the number right before an event's (its mark) has come from its own process: the
-- number seq-1 was logged from fromMs on (its work's start) and before it.
function L.precedes(session, mark, fromMs)
  local seq, ms = parseMark(mark)
  return L.covered(session, seq - 2, seq, fromMs, ms) == 1
end

-- Whether numbering started again (a new process: `--resume` numbers from 0 again) between a
-- prompt numbered `seq`, logged at fromMs, and toMs: a number no higher than `seq` logged then.
function L.restarted(session, seq, fromMs, toMs)
  for _, m in ipairs(L.between(session, '(' .. fromMs, toMs)) do
    if m[1] <= seq then return true end
  end
  return false
end

-- Where a turn's range starts: after its own prompt, or, for the first prompt of a process,
-- before the process's first event (its start-up events land on that prompt's root). A prompt
-- is its process's first unless the session's prompt before it is of the same process: numbered
-- lower, with no sign of numbering started again between them (batches race: an earlier
-- process's prompt may be the one known before it, until the start-up numbers come). Returns
-- the segments of numbers the turn spans, each as { lo, hi, fromMs, toMs } (exclusive bounds,
-- the time they were logged in): its start-up (first prompts only: after the prompt before it,
-- of an earlier process, and up to its own), then its own events (from its prompt to `hi`).
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
  if not ix.traceId then
    redis.call('ZREM', L.deadlines, key)
    return nil
  end
  local v = L.decide(ix)
  if ix.session then
    if v.phase == 'gap' then redis.call('SADD', L.key('waiting', ix.session), key)
    else redis.call('SREM', L.key('waiting', ix.session), key) end
  end
  if v.phase == 'drawn' then
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
