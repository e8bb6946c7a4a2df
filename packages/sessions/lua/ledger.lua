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

-- Adds `sums` ({['model|what'] = n}) on `side` ('e' or 'c') of a session, at time `t` (ns
-- string), and marks it for comparison. `ttl`: seconds the session is kept after this.
function L.add(prefix, index, due, session, side, sums, t, now, ttl)
  local key = prefix .. session
  for slot, n in pairs(sums) do
    redis.call('HINCRBYFLOAT', key, side .. '|' .. slot, n)
  end
  local first = redis.call('HGET', key, 'first')
  if not first or L.later(first, t) then redis.call('HSET', key, 'first', t) end
  if L.later(t, redis.call('HGET', key, 'last') or '') then redis.call('HSET', key, 'last', t) end
  redis.call('HSET', key, 'updated', now)
  redis.call('EXPIRE', key, ttl)
  redis.call('ZADD', index, now, session)
  redis.call('ZADD', due, now, session)
end
