-- claim.lua: takes the shard's interactions whose time has come and leases them to the caller,
-- with what it needs to draw their roots.
--
-- KEYS[1]  the shard's deadline index (sorted set)      KEYS[2]  the shard's stats (hash)
-- Per-interaction keys are built from ARGV[1].templates and share KEYS[1]'s hash tag.
-- ARGV[1]  JSON: { now, cfg, templates, limit,
--                  timersDueBy }   a timer (idle, turn timeout, gap wait) counts as run out only
--                                  if it ran out by then: the oldest batch still queued was
--                                  received then, and it may hold the events the timer waits for
-- Returns  JSON: [{ key, verdict, state: {field: value}, contributions: [json], events: [id, json, ...], inputs: [json] }]
--          events: its held spans, by id (settle.lua marks sent those claimed, and only those)
--
-- A lease is the entry's score moved to now + leaseMs (and `leaseUntil` on the state): no other
-- worker takes it meanwhile, and if this one dies the entry comes due again when it runs out.
--! include lifecycle.lua

local input = cjson.decode(ARGV[1])
L.init(KEYS[1], KEYS[2], input)
local now, leaseMs, recheckMs = L.now, L.cfg.leaseMs, L.cfg.recheckMs

local out = {}
for _, key in ipairs(redis.call('ZRANGEBYSCORE', L.deadlines, '-inf', now, 'LIMIT', 0, input.limit)) do
  local ixKey = L.key('ix', key)
  local ix = L.read(ixKey)
  if not ix.traceId or ix.drawn then
    redis.call('ZREM', L.deadlines, key) -- expired, or drawn by a worker whose lease ran out
  elseif not (tonumber(ix.leaseUntil) and tonumber(ix.leaseUntil) > now) then
    local v = L.decide(ix)
    if v.at > now then
      redis.call('ZADD', L.deadlines, v.at, key)
    elseif v.timer and v.at > tonumber(input.timersDueBy) then
      redis.call('ZADD', L.deadlines, now + recheckMs, key)
    else
      redis.call('HSET', ixKey, 'leaseUntil', now + leaseMs)
      redis.call('ZADD', L.deadlines, now + leaseMs, key)
      v.key = key
      local contributions = redis.call('HVALS', L.key('contributions', key))
      local events = redis.call('HGETALL', L.key('events', key))
      local inputs = redis.call('HVALS', L.key('inputs', key))
      out[#out + 1] = { key = key, verdict = v, state = ix, contributions = contributions, events = events, inputs = inputs }
    end
  end
end
return cjson.encode(out)
