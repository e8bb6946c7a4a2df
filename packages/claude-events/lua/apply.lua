-- apply.lua: what one batch adds to the interactions of one shard, and their new verdicts.
--
-- KEYS[1]  the shard's deadline index (sorted set)      KEYS[2]  the shard's stats (hash)
-- KEYS[3]  the batch's record in this shard (string, keys.ts appliedKey): what applying it handed
--          back. A batch found there was applied already (a retry after a partial success): it
--          changes nothing twice and is handed back the same work.
-- Every other key it touches is built from ARGV[1].templates (keys.ts) and carries the same
-- hash tag as KEYS[1], so the script stays within one slot on a Redis Cluster.
-- ARGV[1]  JSON: { now, cfg, templates,
--            sequences: [{ session, marks: [[seq, ms], ...] }],   every event's event.sequence
--            updates:   [{ key, traceId, session?, resource?, bounds: [[start, end]], prompt?, promptSeq?,
--                          promptAt?, ends: [[seq, kind, ms, request_id]], toolRequests: [request_id],
--                          completions: [[at, text]], evidence, events: n,
--                          contributions: [[id, json]], held: [[id, json]], inputs: [[seq, json]] }],
--            pending:   [{ session, id, span }] }       pending (start-up) spans: session events before any prompt
-- Returns  JSON: { due: [key, ...], late: [[key, n], ...], release: [[key, json], ...] }
--          release: held spans of interactions already drawn, to be sent now
--
-- Every write is idempotent (set-if-lower, set-if-higher, fields keyed by id), so a batch
-- applied twice leaves the same state. This is the one place where what a batch says about a
-- turn is merged with what is stored (interaction.ts sends each value as the batch has it).
--! include lifecycle.lua

local input = cjson.decode(ARGV[1])
local done = input.batch and redis.call('GET', KEYS[3])
if done then return done end

-- What a held span's entry becomes once it is sent (interaction.ts SENT).
local SENT = '-'
L.init(KEYS[1], KEYS[2], input)
local ttl = input.cfg.ttlSeconds

local touched, order = {}, {}
local function touch(key)
  if not touched[key] then
    touched[key] = true
    order[#order + 1] = key
  end
end

-- Pending spans (session-level events: start-up, before a process's first prompt) are held until
-- the session's first prompt at or after their time is known, and then go to that turn: held for
-- its root, or sent at once (release) if that is drawn already. The one place that rule is applied.
local release = {}
local function adopt(session)
  local held = L.key('pending', session)
  local spans = redis.call('HGETALL', held)
  for i = 1, #spans, 2 do
    local start = cjson.decode(spans[i + 1]).start
    -- Nanoseconds as text; prompts are scored in milliseconds.
    local ms = #start > 6 and string.sub(start, 1, -7) or '0'
    local prompt = redis.call('ZRANGEBYSCORE', L.key('prompts', session), ms, '+inf', 'LIMIT', 0, 1)[1]
    if prompt then
      local events = L.key('events', prompt)
      if redis.call('HEXISTS', L.key('ix', prompt), 'drawn') == 1 then
        if redis.call('HEXISTS', events, spans[i]) == 0 then release[#release + 1] = { prompt, spans[i + 1] } end
        redis.call('HSET', events, spans[i], SENT)
      else
        redis.call('HSETNX', events, spans[i], spans[i + 1])
      end
      redis.call('EXPIRE', events, ttl)
      redis.call('HDEL', held, spans[i])
    end
  end
end

-- 1. Sequence numbers; a session's interactions waiting for one of them are looked at again.
for _, s in ipairs(input.sequences) do
  local k = L.key('sequence', s.session)
  for _, m in ipairs(s.marks) do redis.call('ZADD', k, m[1], m[1] .. ':' .. m[2]) end
  redis.call('EXPIRE', k, ttl)
  for _, waiting in ipairs(redis.call('SMEMBERS', L.key('waiting', s.session))) do touch(waiting) end
end

-- 2. Each interaction's state.
local late = {}
for _, u in ipairs(input.updates) do
  local k = L.key('ix', u.key)
  local cur = redis.call('HMGET', k, 'drawn', 'start', 'end', 'completionAt')
  if cur[1] then
    redis.call('HINCRBY', k, 'late', u.events)
    redis.call('HINCRBY', L.stats, 'late_events', u.events)
    late[#late + 1] = { u.key, u.events }
    -- Held spans of a turn drawn already: sent now, once (a batch delivered again sends nothing new).
    local events = L.key('events', u.key)
    for _, h in ipairs(u.held or {}) do
      if h[2] ~= SENT and redis.call('HEXISTS', events, h[1]) == 0 then release[#release + 1] = { u.key, h[2] } end
      redis.call('HSET', events, h[1], SENT)
    end
    if u.held and #u.held > 0 then redis.call('EXPIRE', events, ttl) end
  else
    -- The turn's range: the earliest start and the latest end (nanoseconds as fixed-width text).
    local start, finish = cur[2], cur[3]
    for _, b in ipairs(u.bounds) do
      if not start or b[1] < start then start = b[1] end
      if not finish or b[2] > finish then finish = b[2] end
    end
    if start and start ~= cur[2] then redis.call('HSET', k, 'start', start) end
    if finish and finish ~= cur[3] then redis.call('HSET', k, 'end', finish) end
    redis.call('HSETNX', k, 'traceId', u.traceId)
    redis.call('HSETNX', k, 'firstSeenAt', L.now)
    redis.call('HSET', k, 'seenAt', L.now)
    if u.session then redis.call('HSETNX', k, 'session', u.session) end
    if u.resource then redis.call('HSETNX', k, 'resource', u.resource) end
    if u.evidence then redis.call('HSET', k, 'evidence', '1') end
    if u.prompt then redis.call('HSET', k, 'prompt', u.prompt) end
    if u.promptSeq then redis.call('HSET', k, 'promptSeq', u.promptSeq) end
    if u.promptAt then redis.call('HSET', k, 'promptAt', u.promptAt) end
    -- The completion: the latest answer text (of two at the same time, the one seen later).
    local completion, completionAt
    for _, c in ipairs(u.completions) do
      if not (completionAt or cur[4]) or c[1] >= (completionAt or cur[4]) then completion, completionAt = c[2], c[1] end
    end
    if completion then redis.call('HSET', k, 'completion', completion, 'completionAt', completionAt) end
    for _, e in ipairs(u.ends) do
      redis.call('HSET', k, 'end:' .. e[1], e[2] .. '|' .. e[3] .. '|' .. e[4])
      redis.call('HSETNX', k, 'endSeenAt', L.now)
    end
    for _, request in ipairs(u.toolRequests) do redis.call('HSET', k, 'tool:' .. request, '1') end
    for _, c in ipairs(u.contributions) do redis.call('HSET', L.key('contributions', u.key), c[1], c[2]) end
    -- What its LLM calls got as input (inputs.ts): kept for calls of later batches and the root.
    for _, f in ipairs(u.inputs or {}) do redis.call('HSETNX', L.key('inputs', u.key), f[1], f[2]) end
    -- Spans drawn with the root: an LLM call waiting for its answer, folds onto it or onto the root.
    -- A span sent already (SENT) is never drawn again, whatever copy of it comes later.
    if u.held and #u.held > 0 then
      for _, h in ipairs(u.held) do redis.call(h[2] == SENT and 'HSET' or 'HSETNX', L.key('events', u.key), h[1], h[2]) end
      redis.call('EXPIRE', L.key('events', u.key), ttl)
    end
    touch(u.key)
  end
  if u.session and u.promptAt then
    -- The session's timeline: a prompt ends the one before it, and is ended by the one after.
    local timeline = L.key('prompts', u.session)
    redis.call('ZADD', timeline, u.promptAt, u.key)
    redis.call('EXPIRE', timeline, ttl)
    local before = redis.call('ZREVRANGEBYSCORE', timeline, '(' .. u.promptAt, '-inf', 'LIMIT', 0, 1)[1]
    if before and L.endByNextPrompt(before, u.promptSeq, u.promptAt) then touch(before) end
    local after = redis.call('ZRANGEBYSCORE', timeline, '(' .. u.promptAt, '+inf', 'LIMIT', 0, 1)[1]
    if after then
      local next = redis.call('HMGET', L.key('ix', after), 'promptSeq', 'promptAt')
      if L.endByNextPrompt(u.key, next[1], next[2] or u.promptAt) then touch(u.key) end
    end
    adopt(u.session)
  end
  L.expire(u.key)
end

-- 3. Session-level events that came before any prompt of their session.
for _, p in ipairs(input.pending) do
  local held = L.key('pending', p.session)
  redis.call('HSET', held, p.id, p.span)
  redis.call('EXPIRE', held, ttl)
  adopt(p.session) -- a prompt may have been stored since the batch was planned
end

-- 4. New verdicts for everything the batch touched.
local due = {}
for _, key in ipairs(order) do
  local v = L.schedule(key)
  if v and v.phase == 'due' then due[#due + 1] = key end
end
local result = cjson.encode({ due = due, late = late, release = release })
if input.batch then redis.call('SET', KEYS[3], result, 'EX', ttl) end
return result
