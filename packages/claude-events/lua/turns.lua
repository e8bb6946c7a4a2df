-- turns.lua: a shard's turns: what a batch adds to them (T.apply), which are due to be drawn
-- (T.claim), and marking those drawn (T.settle), as lifecycle.lua alone decides. Included by
-- batch.lua, commit.lua and due.lua, after L.init. Keys (keys.ts PerIdKey says what each holds):
-- a turn's `ix`, `text`, `contributions`, `events`, `inputs`; its session's `prompts`,
-- `sequenceAt`, `waiting`, `pending`, `adopted`.
--! include held.lua

local T = {}

-- T.apply(input): input = { sequences, updates, pending } as interaction.ts plans them
-- (SequenceMarks, TurnUpdate, PendingSpan). Returns due ({key}), late ({{key, n}}), release
-- ({{key, json}}: held spans of turns drawn already, marked sent: to be sent now). Every write is
-- idempotent (set-if-lower, set-if-higher, fields keyed by id) but the late count and release:
-- batch.lua keeps those per batch, so a batch is applied once. This is the one place where what a
-- batch says about a turn is merged with what is stored.
function T.apply(input)
  local touch, order = distinct()

  -- Pending (start-up) spans go to the turn of the first later prompt of their own process
  -- (H.sameProcess): held for its root, or sent at once (release) if that is drawn already.
  local release = {}
  -- A pending span's event's time (ms, as prompts are scored) and event.sequence: off its JSON's
  -- head (interaction.ts), or from an older bridge's record (no `at`: its start in ns, as text).
  local function whenAndNumber(json)
    local ms, seq = string.match(json, '^{"at":"(%d+)","seq":(%w+),')
    if ms then return ms, tonumber(seq) end
    local span = cjson.decode(json)
    for _, a in ipairs(span.attributes or {}) do
      if a.key == 'event.sequence' then seq = tonumber(a.value.intValue or a.value.stringValue) end
    end
    return span.at or (#span.start > 6 and string.sub(span.start, 1, -7)) or '0', seq
  end
  local function adopt(session)
    local held = L.key('pending', session)
    local spans, chains, adopted = redis.call('HGETALL', held), {}, {}
    for i = 1, #spans, 2 do
      local ms, seq
      if spans[i + 1] ~= SENT then ms, seq = whenAndNumber(spans[i + 1]) end
      local prompt = ms and redis.call('ZRANGEBYSCORE', L.key('prompts', session), ms, '+inf', 'LIMIT', 0, 1)[1]
      if not ms then adopted[#adopted + 1] = spans[i] end -- (an older bridge's mark: moved to `adopted`)
      if prompt and H.sameProcess(session, seq, ms, prompt, chains) then
        local events = L.key('events', prompt)
        if redis.call('HEXISTS', L.key('ix', prompt), 'drawn') == 1 then
          if redis.call('HEXISTS', events, spans[i]) == 0 then release[#release + 1] = { prompt, spans[i + 1] } end
          redis.call('HSET', events, spans[i], SENT)
        else
          redis.call('HSETNX', events, spans[i], spans[i + 1])
        end
        L.keep(events)
        -- Remembered apart (`adopted`): a copy delivered again is not adopted again (by another
        -- prompt, if batches raced: a later process's start-up chain can look like its own until
        -- the earlier process's prompt and last events come).
        adopted[#adopted + 1] = spans[i]
      end
    end
    L.inChunks('HDEL', held, adopted)
    L.inChunks('SADD', L.key('adopted', session), adopted)
    if #adopted > 0 then L.keep(L.key('adopted', session)) end
  end

  -- 1. Sequence numbers; a session's interactions waiting for one of them are looked at again.
  for _, s in ipairs(input.sequences) do
    local marks = {}
    for _, m in ipairs(s.marks) do marks[#marks + 1] = m[1] .. ':' .. m[2] end
    L.addMarks(s.session, marks)
    for _, waiting in ipairs(redis.call('SMEMBERS', L.key('waiting', s.session))) do touch(waiting) end
  end

  -- 2. Each interaction's state. Sessions whose timeline got a prompt adopt their start-up
  -- spans in step 3, once, with every prompt of the batch known.
  local late = {}
  local adopting, sessions = distinct()
  for _, u in ipairs(input.updates) do
    local k = L.key('ix', u.key)
    -- Then the fields set once (the first value stands).
    local cur = redis.call('HMGET', k, 'drawn', 'start', 'end', 'completionAt', 'traceId', 'firstSeenAt', 'session', 'resource', 'endSeenAt')
    if cur[1] then
      redis.call('HINCRBY', k, 'late', u.events)
      redis.call('HINCRBY', L.stats, 'late_events', u.events)
      late[#late + 1] = { u.key, u.events }
      -- Held spans of a turn drawn already: sent now, once (a batch delivered again sends nothing new).
      local events = L.key('events', u.key)
      for _, h in ipairs(u.held or {}) do
        if H.releasable(h[2]) and redis.call('HEXISTS', events, h[1]) == 0 then release[#release + 1] = { u.key, h[2] } end
        redis.call('HSET', events, h[1], SENT)
      end
    else
      -- The turn's range: the earliest start and the latest end (nanoseconds as fixed-width text).
      local start = (cur[2] and cur[2] < u.bounds[1]) and cur[2] or u.bounds[1]
      local finish = (cur[3] and cur[3] > u.bounds[2]) and cur[3] or u.bounds[2]
      -- Every field this batch sets, in one HSET per hash: its state, its text, what its root sums.
      local set, text, contributions = { 'seenAt', L.now }, {}, {}
      local function put(field, value, into) if value then into = into or set; into[#into + 1], into[#into + 2] = field, value end end
      local function once(i, field, value) if not cur[i] then put(field, value) end end
      once(5, 'traceId', u.traceId)
      once(6, 'firstSeenAt', L.now)
      once(7, 'session', u.session)
      once(8, 'resource', u.resource)
      if #u.ends > 0 then once(9, 'endSeenAt', L.now) end
      if start ~= cur[2] then put('start', start) end
      if finish ~= cur[3] then put('end', finish) end
      if u.evidence then put('evidence', '1') end
      put('promptSeq', u.promptSeq)
      put('promptAt', u.promptAt)
      -- The completion: the latest answer text (of two at the same time, the one seen later).
      local completion, completionAt
      for _, c in ipairs(u.completions) do
        if not (completionAt or cur[4]) or c[1] >= (completionAt or cur[4]) then completion, completionAt = c[2], c[1] end
      end
      put('completionAt', completionAt)
      put('prompt', u.prompt, text)
      put('completion', completion, text)
      for _, c in ipairs(u.contributions) do put(c[1], c[2], contributions) end
      for _, e in ipairs(u.ends) do put('end:' .. e[1], e[2] .. '|' .. e[3] .. '|' .. e[4]) end
      for _, request in ipairs(u.toolRequests) do put('tool:' .. request, '1') end
      for kind, fields in pairs({ ix = set, text = text, contributions = contributions }) do
        L.inChunks('HSET', L.key(kind, u.key), fields)
      end
      -- What its LLM calls got as input (inputs.ts): kept for calls of later batches and the root.
      for _, f in ipairs(u.inputs or {}) do redis.call('HSETNX', L.key('inputs', u.key), f[1], f[2]) end
      -- Spans drawn with the root: an LLM call waiting for its answer, folds onto it or onto the root.
      -- A span sent already (SENT) is never drawn again, whatever copy of it comes later.
      for _, h in ipairs(u.held or {}) do redis.call(h[2] == SENT and 'HSET' or 'HSETNX', L.key('events', u.key), h[1], h[2]) end
      touch(u.key)
    end
    if u.session and u.promptAt then
      -- The session's timeline: a prompt ends the one before it, and is ended by the one after.
      local timeline = L.key('prompts', u.session)
      redis.call('ZADD', timeline, u.promptAt, u.key)
      L.keep(timeline)
      local before = redis.call('ZREVRANGEBYSCORE', timeline, '(' .. u.promptAt, '-inf', 'LIMIT', 0, 1)[1]
      if before and L.endByNextPrompt(before, u.promptSeq, u.promptAt) then touch(before) end
      local after = redis.call('ZRANGEBYSCORE', timeline, '(' .. u.promptAt, '+inf', 'LIMIT', 0, 1)[1]
      if after then
        local next = redis.call('HMGET', L.key('ix', after), 'promptSeq', 'promptAt')
        if L.endByNextPrompt(u.key, next[1], next[2] or u.promptAt) then touch(u.key) end
      end
      adopting(u.session)
    end
    -- Its keys (`events` included, written above) are told the TTL.
    for _, kind in ipairs({ 'ix', 'text', 'contributions', 'events', 'inputs' }) do L.keep(L.key(kind, u.key)) end
  end

  -- 3. Session-level events that came before any prompt of their session; and those waiting
  -- for numbers between them and their prompt, which this batch may hold.
  for _, p in ipairs(input.pending) do
    local held = L.key('pending', p.session)
    -- (An older bridge marked those adopted SENT in `pending`: not set again.)
    if redis.call('SISMEMBER', L.key('adopted', p.session), p.id) == 0 then redis.call('HSETNX', held, p.id, p.span) end
    L.keep(held)
    adopting(p.session)
  end
  for _, s in ipairs(input.sequences) do adopting(s.session) end
  for _, session in ipairs(sessions) do adopt(session) end

  -- 4. New verdicts for everything the batch touched.
  local due = {}
  for _, key in ipairs(order) do
    local v = L.schedule(key)
    if v and v.phase == 'due' then due[#due + 1] = key end
  end
  return due, late, release
end

-- T.claim(limit, timersDueBy): leases the shard's turns whose time has come, with what drawing
-- their roots needs: [{ key, verdict, state: {field: value}, contributions: [json], events: [id,
-- json, ...], inputs: [json] }]. A timer (idle, turn timeout, gap wait) runs out only if it did by
-- timersDueBy, when the oldest batch still queued (which may hold what it waits for) was received.
-- A lease moves the entry's score to now + leaseMs (and sets `leaseUntil`): no other worker takes
-- it meanwhile, and if this one dies it comes due again when the lease runs out.
function T.claim(limit, timersDueBy)
  local now, leaseMs, recheckMs = L.now, L.cfg.leaseMs, L.cfg.recheckMs
  local out = {}
  for _, key in ipairs(redis.call('ZRANGEBYSCORE', L.deadlines, '-inf', now, 'LIMIT', 0, limit)) do
    local ixKey = L.key('ix', key)
    local ix = L.read(ixKey)
    if not ix.traceId or ix.drawn then
      redis.call('ZREM', L.deadlines, key) -- expired, or drawn by a worker whose lease ran out
    elseif not (tonumber(ix.leaseUntil) and tonumber(ix.leaseUntil) > now) then
      local v = L.decided(key, ix)
      if v.at > now then
        redis.call('ZADD', L.deadlines, v.at, key)
      elseif v.timer and v.at > tonumber(timersDueBy) then
        redis.call('ZADD', L.deadlines, now + recheckMs, key)
      else
        redis.call('HSET', ixKey, 'leaseUntil', now + leaseMs, 'leaseComplete', v.complete and '1' or '0')
        redis.call('ZADD', L.deadlines, now + leaseMs, key)
        v.key = key
        for field, value in pairs(L.read(L.key('text', key))) do ix[field] = value end -- (an older bridge's: in ix)
        local contributions = redis.call('HVALS', L.key('contributions', key))
        local events = redis.call('HGETALL', L.key('events', key))
        local inputs = redis.call('HVALS', L.key('inputs', key))
        out[#out + 1] = { key = key, verdict = v, state = ix, contributions = contributions, events = events, inputs = inputs }
      end
    end
  end
  return out
end

-- A complete turn's own sequence numbers are needed by no other interaction: no two turns of
-- one process overlap (a turn ends where the next prompt starts). Which numbers those are is
-- decided again (L.decide) on the state as it is now.
local function forgetSequences(key, ix)
  local v = L.decide(ix)
  if not (ix.session and v.range) then return end
  -- Its own numbers only: its process's start-up numbers (a first prompt's) are kept, for the
  -- window they are counted in may hold another process's while batches race (L.segments).
  local lo, hi, from, to = unpack(v.range[#v.range], 1, 4)
  -- Every number up to its end had come: what asks later whether they all came reads this.
  redis.call('HSET', L.key('ix', key), 'coveredTo', hi)
  local gone = {}
  for _, m in ipairs(L.between(ix.session, from, to)) do
    if m[1] >= lo and m[1] <= hi then gone[#gone + 1] = m[3] end
  end
  L.addMarks(ix.session, gone, true)
end

-- T.settle(drawn, retry): after the caller drew the roots it claimed.
--   drawn: [{ key, complete, held: [id] }]   complete: as the claimed verdict said; held: the
--                                            held spans the claim handed back
--   retry: [{ key, at }]                     given back, to be looked at again at `at`
-- Returns the number marked drawn, and release: held spans a batch added after the root was
-- claimed (T.apply does not wait for a lease): not in the root that went, so handed back to be
-- sent now, marked sent, as T.apply hands back those of a turn drawn already.
function T.settle(drawn, retry)
  local count, release = 0, {}
  for _, d in ipairs(drawn) do
    local ixKey = L.key('ix', d.key)
    local ix = L.read(ixKey)
    if ix.traceId and not ix.drawn then
      redis.call('HSET', ixKey, 'drawn', '1', 'drawnAt', L.now)
      redis.call('HDEL', ixKey, 'leaseUntil', 'leaseComplete', 'phase', 'prompt', 'completion')
      redis.call('DEL', L.key('contributions', d.key), L.key('inputs', d.key), L.key('text', d.key))
      -- Held spans are marked sent, so a later copy of one is not sent again: those drawn with the
      -- root, and those that came since it was claimed, handed back now.
      -- Their ids are read, and the bodies of those not claimed only (bodies can be large).
      local claimed, sent, events = {}, {}, L.key('events', d.key)
      for _, id in ipairs(d.held or {}) do claimed[id] = true end
      for _, id in ipairs(redis.call('HKEYS', events)) do
        local json = not claimed[id] and redis.call('HGET', events, id)
        if json and H.releasable(json) then release[#release + 1] = { d.key, json } end
        sent[#sent + 1], sent[#sent + 2] = id, SENT
      end
      L.inChunks('HSET', events, sent)
      if ix.session then redis.call('SREM', L.key('waiting', ix.session), d.key) end
      redis.call('HINCRBY', L.stats, 'drawn', 1)
      if d.complete then forgetSequences(d.key, ix) else redis.call('HINCRBY', L.stats, 'drawn_incomplete', 1) end
      count = count + 1
    end
    redis.call('ZREM', L.deadlines, d.key)
  end
  for _, r in ipairs(retry) do
    local ixKey = L.key('ix', r.key)
    if redis.call('HEXISTS', ixKey, 'drawn') == 0 then
      redis.call('HDEL', ixKey, 'leaseUntil', 'leaseComplete')
      redis.call('ZADD', L.deadlines, r.at, r.key)
    end
  end
  return count, release
end
