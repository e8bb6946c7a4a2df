-- shard.lua: what every script of a shard shares: the L table (its time, settings and key
-- templates: L.init), span bodies as arguments and reply items of their own (L.bodies, L.reply),
-- per-id keys (L.key), reading hashes (L.read, L.fields), and the keys told the shard's TTL once
-- (L.keep, L.flush). Included first, by sequence.lua and lifecycle.lua.

local L = { now = 0, cfg = {}, templates = {}, deadlines = '', stats = '', callDeadlines = '' }
-- What a held span's entry becomes once it is sent (interaction.ts SENT), for the scripts that include this.
local SENT = '-'

-- The shard's declared keys (deadline index, stats, held spans' deadlines); the input's now, cfg, templates.
function L.init(keys, input)
  L.deadlines, L.stats, L.callDeadlines = keys[1], keys[2], keys[3]
  L.now, L.cfg, L.templates = tonumber(input.now), input.cfg, input.templates
end

-- Span bodies (JSON text) travel as arguments and reply items of their own, not escaped inside
-- the JSON input and summary. In the input each place that holds one holds its index (ARGV[1 + i];
-- store.ts withBodyRefs: sessions[].spans[][3], updates[].held[][2] unless SENT, updates[].prompt,
-- pending[].span, news); L.bodies puts them back. L.reply hands back the summary (reply item 1) and the
-- bodies, each named by its index in the reply (store.ts bodiesIn), or by -(its input index) if this
-- call brought it: release[][2], placed[].spans[], claimed[].events (every second item, unless SENT),
-- claimed[].state .prompt and .completion.
local sent = {} -- the bodies this call brought: their input index
function L.bodies(input, argv)
  local function body(i) sent[argv[1 + i]] = i return argv[1 + i] end
  for _, s in ipairs(input.sessions or {}) do
    for _, sp in ipairs(s.spans) do sp[3] = body(sp[3]) end
  end
  for _, u in ipairs(input.updates or {}) do
    if u.prompt then u.prompt = body(u.prompt) end
    for _, h in ipairs(u.held or {}) do if h[2] ~= SENT then h[2] = body(h[2]) end end
  end
  for _, p in ipairs(input.pending or {}) do p.span = body(p.span) end
  if input.news then input.news = argv[1 + input.news] end
  return input
end
function L.reply(out)
  local reply = { '' }
  local function ref(body)
    if sent[body] then return -sent[body] end
    reply[#reply + 1] = body
    return #reply
  end
  for _, r in ipairs(out.release or {}) do r[2] = ref(r[2]) end
  for _, p in ipairs(out.placed or {}) do
    for j, body in ipairs(p.spans) do p.spans[j] = ref(body) end
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

-- Calls `cmd key ...list`, at most 400 items a call (unpack's limit), in order; none if it is empty.
-- Returns the items of the replies that are lists (HMGET's values), in order.
function L.inChunks(cmd, key, list)
  local out = {}
  for i = 1, #list, 400 do
    local reply = redis.call(cmd, key, unpack(list, i, math.min(i + 399, #list)))
    if type(reply) == 'table' then for _, v in ipairs(reply) do out[#out + 1] = v end end
  end
  return out
end
