-- ledger-check.lua: takes the sessions quiet long enough to compare, and says for each what
-- its counters and events differ by beyond what was already reported.
--
-- KEYS[1]  due (sorted set: session → last activity, ms, or a lease)
-- Per-session keys are ARGV[1] .. id, sharing KEYS[1]'s hash tag.
-- ARGV[1]  the prefix of per-session keys
-- ARGV[2]  cutoff (ms): sessions last active by then are compared (the settle time before now,
--          and before the oldest batch still queued, which may hold their events or counters)
-- ARGV[3]  lease (ms from now): a session taken is not taken again meanwhile
-- ARGV[4]  now (ms)    ARGV[5]  most sessions to take
-- Returns  JSON: [{ session, lease, diffs: {['model|what']: n}, from, to, latestKey }] with
--          `diffs` empty when the two sides agree (the caller settles it all the same).
local out = {}
local lease = tonumber(ARGV[4]) + tonumber(ARGV[3])
for _, session in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[2], 'LIMIT', 0, tonumber(ARGV[5]))) do
  local fields = redis.call('HGETALL', ARGV[1] .. session)
  local h = {}
  for i = 1, #fields, 2 do h[fields[i]] = fields[i + 1] end
  local diffs = {}
  local any = false
  for field, value in pairs(h) do
    local side, slot = string.match(field, '^([ecr])|(.+)$')
    if side and not diffs[slot] then
      local d = tonumber(h['c|' .. slot] or '0') - tonumber(h['e|' .. slot] or '0') - tonumber(h['r|' .. slot] or '0')
      diffs[slot] = d
    end
  end
  local out_diffs = {}
  for slot, d in pairs(diffs) do
    local tolerance = 0.5
    if string.match(slot, '|cost$') then tolerance = 0.000001 end
    if math.abs(d) > tolerance then
      out_diffs[slot] = string.format('%.17g', d)
      any = true
    end
  end
  redis.call('ZADD', KEYS[1], lease, session)
  out[#out + 1] = {
    session = session, lease = lease, diffs = any and out_diffs or cjson.null,
    from = h['checked'] or h['first'] or '', to = h['last'] or '', latestKey = h['latestKey'] or '',
  }
end
return cjson.encode(out)
