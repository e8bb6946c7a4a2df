-- meet.lua: a background Agent call's tool span and its subagent's totals (subagent_completed),
-- held until they meet. The call returns at once ("async_launched") and its span would be sent
-- long before the subagent ends; it waits here for the totals, which fold onto it as onto a
-- foreground call's, and is sent once: with them, or without them once its wait runs out
-- (BRIDGE_TURN_TIMEOUT_MS, cfg.turnTimeoutMs). Totals whose span was sent without them are
-- handed back to be drawn as a row of their own, as before: nothing is dropped.
--
-- KEYS[1]  the shard's deadlines for held calls (sorted set: "session<TAB>call" -> ms)
-- KEYS[2]  the shard's stats (hash)
-- Per-session keys are built from ARGV[1].templates (keys.ts `callSpans`: hash, fields
-- `span:<call>` and `totals:<call>`, JSON or '-' once sent) and share KEYS[1]'s hash tag.
-- ARGV[1]  JSON: { now, cfg, templates, mode, items }
--   mode 'put':  items [{ session, call, kind = 'span'|'totals', json, wait?, after? }]: held, and
--                each call whose span and totals are both held is handed back; a span that does
--                not wait (a foreground call's: its totals come before it) is handed back at once,
--                once the event.sequence `after` (where its totals would be) has come
--   mode 'due':  items unused: calls whose wait ran out are handed back, leased for cfg.leaseMs
--   mode 'done': items [{ session, call, span?, totals? }]: what was handed back is sent; marked
--                so ('-')
-- Returns  JSON (put, due): [{ session, call, span?, totals? }]
--
-- Nothing is marked sent before the caller has sent it (mode 'done'), so a batch retried after
-- a failed export meets the same pair again; a span sent twice has one id, kept once by LLMFlow.
--! include lifecycle.lua

local input = cjson.decode(ARGV[1])
L.init(KEYS[1], KEYS[2], input)
local SENT = '-'
local ttl = input.cfg.ttlSeconds
local member = function(session, call) return session .. '\t' .. call end

local function state(session, call)
  local v = redis.call('HMGET', L.key('callSpans', session), 'span:' .. call, 'totals:' .. call)
  return v[1] or nil, v[2] or nil
end

local function entry(session, call, span, totals)
  local e = { session = session, call = call }
  if span and span ~= SENT then e.span = span end
  if totals and totals ~= SENT then e.totals = totals end
  return e
end

local out = {}
if input.mode == 'put' then
  -- All parts first, then each call once: a span and its totals in one batch meet whatever their order.
  local calls, order = {}, {}
  for _, it in ipairs(input.items) do
    local k = L.key('callSpans', it.session)
    local field = it.kind .. ':' .. it.call
    if redis.call('HGET', k, field) ~= SENT then redis.call('HSETNX', k, field, it.json) end
    redis.call('EXPIRE', k, ttl)
    local m = member(it.session, it.call)
    if not calls[m] then
      calls[m] = { session = it.session, call = it.call, go = false }
      order[#order + 1] = m
    end
    -- A foreground call's totals are logged just before its result: once that number is here
    -- (apply.lua keeps them), they came already or never will.
    if it.kind == 'span' and not it.wait
      and (not it.after or redis.call('ZCOUNT', L.key('sequence', it.session), it.after, it.after) > 0) then
      calls[m].go = true
    end
  end
  for _, m in ipairs(order) do
    local c = calls[m]
    local span, totals = state(c.session, c.call)
    local fresh = function(v) return v and v ~= SENT end
    if fresh(totals) and span then
      -- They meet (or the span went without them: the totals are drawn as their own row).
      out[#out + 1] = entry(c.session, c.call, span, totals)
    elseif fresh(span) and c.go then
      out[#out + 1] = entry(c.session, c.call, span, nil)
    elseif fresh(span) or fresh(totals) then
      -- One of them waits for the other, at most the turn timeout.
      redis.call('ZADD', KEYS[1], 'NX', L.now + input.cfg.turnTimeoutMs, m)
    end
  end
elseif input.mode == 'due' then
  for _, m in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', L.now, 'LIMIT', 0, 100)) do
    local session, call = string.match(m, '^(.*)\t(.*)$')
    local span, totals = state(session, call)
    local e = entry(session, call, span, totals)
    if e.span or e.totals then
      redis.call('ZADD', KEYS[1], L.now + input.cfg.leaseMs, m)
      out[#out + 1] = e
    else
      redis.call('ZREM', KEYS[1], m)
    end
  end
elseif input.mode == 'done' then
  for _, it in ipairs(input.items) do
    local k = L.key('callSpans', it.session)
    -- Only what was handed back is marked: a span that comes after its totals went alone still goes.
    if it.span then redis.call('HSET', k, 'span:' .. it.call, SENT) end
    if it.totals then redis.call('HSET', k, 'totals:' .. it.call, SENT) end
    redis.call('EXPIRE', k, ttl)
    redis.call('ZREM', KEYS[1], member(it.session, it.call))
  end
end
return cjson.encode(out)
