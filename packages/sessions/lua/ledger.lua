-- ledger.lua: shared by the ledger's scripts (included with `--! include ledger.lua`).
--
-- A session's hash (prefix .. session id) holds, per `model|what` (what: input, output,
-- cacheRead, cacheCreation, cost): `e|...` what its api_request events add up to, `c|...` what
-- Claude Code's counters say, `r|...` the differences already reported. And `first`, `last`
-- (Unix ns, the earliest and latest time either side covers), `checked` (ns: up to where it
-- was compared), `latestKey`, `latestTime` (its latest turn), `updated` (ms).
local L = {}

-- Decimal nanosecond times pass 2^53: compared as digit strings (no leading zeros).
function L.later(a, b)
  if not b or b == '' then return true end
  if #a ~= #b then return #a > #b end
  return a > b
end

-- Adds `sums` ({['model|what'] = n}) on `side` ('e' or 'c') of a session, over the time from `t`
-- to `tLast` (ns strings; tLast defaults to t), and marks it for comparison. `ttl`: seconds the
-- session is kept after this.
function L.add(prefix, index, due, session, side, sums, t, now, ttl, tLast)
  local key = prefix .. session
  for slot, n in pairs(sums) do
    redis.call('HINCRBYFLOAT', key, side .. '|' .. slot, n)
  end
  local cur = redis.call('HMGET', key, 'first', 'last')
  local set = { 'updated', now }
  if not cur[1] or L.later(cur[1], t) then set[3], set[4] = 'first', t end
  if L.later(tLast or t, cur[2] or '') then set[#set + 1], set[#set + 2] = 'last', tLast or t end
  redis.call('HSET', key, unpack(set))
  redis.call('EXPIRE', key, ttl)
  redis.call('ZADD', index, now, session)
  redis.call('ZADD', due, now, session)
end

-- Adds entries ({ session, t, sums }) on `side`, summed per session first: each session's ledger
-- is written once per call, not once per entry (L.add).
function L.addEach(prefix, index, due, side, entries, now, ttl)
  local bySession, order = {}, {}
  for _, e in ipairs(entries) do
    local s = bySession[e.session]
    if not s then
      s = { sums = {}, first = e.t, last = e.t }
      bySession[e.session] = s
      order[#order + 1] = e.session
    end
    for slot, n in pairs(e.sums) do s.sums[slot] = (s.sums[slot] or 0) + n end
    if L.later(s.first, e.t) then s.first = e.t end
    if L.later(e.t, s.last) then s.last = e.t end
  end
  for _, session in ipairs(order) do
    local s, finite = bySession[session], true
    for _, n in pairs(s.sums) do finite = finite and n == n and n ~= math.huge and n ~= -math.huge end
    if finite then
      L.add(prefix, index, due, session, side, s.sums, s.first, now, ttl, s.last)
    else
      -- A sum a double cannot hold (Redis adds in long double): each entry on its own, as it came.
      for _, e in ipairs(entries) do
        if e.session == session then L.add(prefix, index, due, session, side, e.sums, e.t, now, ttl) end
      end
    end
  end
end
