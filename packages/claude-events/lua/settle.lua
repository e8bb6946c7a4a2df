-- settle.lua: after the caller tried to draw the roots it claimed: marks the drawn ones (later
-- events are late, not new) and gives the others back to be tried again.
--
-- KEYS[1]  the shard's deadline index (sorted set)      KEYS[2]  the shard's stats (hash)
-- Per-interaction keys are built from ARGV[1].templates and share KEYS[1]'s hash tag.
-- ARGV[1]  JSON: { now, cfg, templates,
--                  drawn: [{ key, complete, held: [id] }],  complete: as the verdict claim.lua gave
--                                                           said; held: the held spans it handed back
--                  retry: [{ key, at }] }
-- Returns  JSON: { drawn: n, release: [[key, json], ...] }
--          release: held spans a batch added after the root was claimed (apply.lua does not wait
--          for a lease): not in the root just sent, so handed back to be sent now, in its trace,
--          as apply.lua hands back those of a turn drawn already. Only what was handed back is
--          marked sent.
--! include lifecycle.lua

local input = cjson.decode(ARGV[1])
L.init(KEYS[1], KEYS[2], input)

-- A complete turn's sequence numbers are needed by no other interaction: no two turns of one
-- process overlap (a turn ends where the next prompt starts). Which numbers those are is decided
-- again (L.decide) on the state as it is now.
local function forgetSequences(ix)
  local v = L.decide(ix)
  if not (ix.session and v.range) then return end
  local k = L.key('sequence', ix.session)
  local lo, hi, from, to = v.range[1], v.range[2], v.range[3], v.range[4]
  for _, m in ipairs(redis.call('ZRANGEBYSCORE', k, math.max(lo, 0), hi)) do
    local at = tonumber(string.match(m, ':(%d+)$'))
    if at and at >= from and at <= to then redis.call('ZREM', k, m) end
  end
end

local SENT = '-'
local drawn, release = 0, {}
for _, d in ipairs(input.drawn) do
  local ixKey = L.key('ix', d.key)
  local ix = L.read(ixKey)
  if ix.traceId and not ix.drawn then
    redis.call('HSET', ixKey, 'drawn', '1', 'drawnAt', L.now)
    redis.call('HDEL', ixKey, 'leaseUntil', 'phase', 'prompt', 'completion')
    redis.call('DEL', L.key('contributions', d.key), L.key('inputs', d.key))
    -- Held spans are marked sent, so a later copy of one is not sent again: those drawn with the
    -- root, and those that came since it was claimed, handed back now.
    local claimed = {}
    for _, id in ipairs(d.held or {}) do claimed[id] = true end
    local events = L.key('events', d.key)
    local held = redis.call('HGETALL', events)
    for i = 1, #held, 2 do
      if not claimed[held[i]] and held[i + 1] ~= SENT then release[#release + 1] = { d.key, held[i + 1] } end
      redis.call('HSET', events, held[i], SENT)
    end
    if ix.session then redis.call('SREM', L.key('waiting', ix.session), d.key) end
    redis.call('HINCRBY', L.stats, 'drawn', 1)
    if d.complete then forgetSequences(ix) else redis.call('HINCRBY', L.stats, 'drawn_incomplete', 1) end
    drawn = drawn + 1
  end
  redis.call('ZREM', L.deadlines, d.key)
end
for _, r in ipairs(input.retry) do
  local ixKey = L.key('ix', r.key)
  if redis.call('HEXISTS', ixKey, 'drawn') == 0 then
    redis.call('HDEL', ixKey, 'leaseUntil')
    redis.call('ZADD', L.deadlines, r.at, r.key)
  end
end
return cjson.encode({ drawn = drawn, release = release })
