-- deltas.lua: what a metrics job's cumulative points follow, read and advanced once per job.
--
-- A cumulative counter's point says "this much since the series started"; LLMFlow sums points,
-- so each must be turned into what came since the series' previous point (the Collector's
-- cumulativetodelta processor). The previous point of every series is kept here, shared by all
-- workers and surviving their restarts. A job's answer is kept too (KEYS[1]), so a job tried
-- again gets the same answer, not deltas against the points it already advanced past.
--
-- KEYS[1]  the job's record (hash): `prev` (JSON: one entry per point, below), `posted` (how
--          many of its requests LLMFlow took). Per-series keys are ARGV[2] .. series id and share
--          KEYS[1]'s hash tag.
-- ARGV[1]  seconds the record is kept (longer than the job may be retried)
-- ARGV[2]  the prefix of the per-series keys (string: `timeUnixNano value`)
-- ARGV[3]  seconds a series is kept after its last point
-- ARGV[4..] per cumulative point, in the job's order, 3 values: series id, timeUnixNano (decimal
--          string), value (decimal string)
-- Returns  { prev JSON, posted, made } (`made` 1 when this call made the record). Each entry of prev is '' (the series' first point),
--          'timeUnixNano value' (the point it follows), or '!' (stale: not later than the
--          series' last point, already counted).

local record = KEYS[1]
if redis.call('EXISTS', record) == 1 then
  local kept = redis.call('HMGET', record, 'prev', 'posted')
  return { kept[1], kept[2], 0 }
end

-- Decimal nanosecond times pass 2^53: compared as digit strings (no leading zeros).
local function later(a, b)
  if #a ~= #b then return #a > #b end
  return a > b
end

local prev = {}
for i = 4, #ARGV, 3 do
  local key, time, value = ARGV[2] .. ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local last = redis.call('GET', key)
  local entry = ''
  if last then
    local lastTime = string.match(last, '^(%S+)')
    if later(time, lastTime) then entry = last else entry = '!' end
  end
  if entry ~= '!' then redis.call('SET', key, time .. ' ' .. value, 'EX', ARGV[3]) end
  prev[#prev + 1] = entry
end

local json = cjson.encode(prev)
-- An empty Lua table encodes as an object: a job without cumulative points has an empty list.
if #prev == 0 then json = '[]' end
redis.call('HSET', record, 'prev', json, 'posted', 0)
redis.call('EXPIRE', record, ARGV[1])
return { json, '0', 1 }
