-- ledger-settle.lua: a session compared (and its finding, if any, reported): the differences
-- are recorded as reported, never to be reported again, and the session leaves `due` unless
-- news came meanwhile.
--
-- KEYS[1]  due (sorted set)    Per-session keys are ARGV[1] .. id, sharing KEYS[1]'s hash tag.
-- ARGV[1]  prefix    ARGV[2]  session    ARGV[3]  the lease check.lua gave it (ms)
-- ARGV[4]  `to` (ns): compared up to there    ARGV[5]  the verdict    ARGV[6]  JSON {['model|what']: n} reported
local key = ARGV[1] .. ARGV[2]
for slot, n in pairs(cjson.decode(ARGV[6])) do
  redis.call('HINCRBYFLOAT', key, 'r|' .. slot, n)
end
if ARGV[4] ~= '' then redis.call('HSET', key, 'checked', ARGV[4]) end
redis.call('HSET', key, 'verdict', ARGV[5])
if ARGV[5] ~= 'ok' then redis.call('HINCRBY', key, 'findings', 1) end
-- News meanwhile moved its score from the lease to its time: it stays, to be compared again.
if tonumber(redis.call('ZSCORE', KEYS[1], ARGV[2]) or '-1') == tonumber(ARGV[3]) then
  redis.call('ZREM', KEYS[1], ARGV[2])
end
return 1
