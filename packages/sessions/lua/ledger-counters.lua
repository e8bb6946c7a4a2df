-- ledger-counters.lua: a metrics job's counter points (already deltas), added to their
-- sessions' ledgers once per job (the job's record says it was done: field `counted`).
--
-- KEYS[1]  sessions (sorted set)    KEYS[2]  due (sorted set)    KEYS[3]  the metrics job's record (hash)
-- Per-session keys are ARGV[1] .. id, sharing KEYS[1]'s hash tag.
-- ARGV[1]  the prefix of per-session keys    ARGV[2]  now (ms)    ARGV[3]  seconds a session is kept
-- ARGV[4]  JSON: [{ session, t, sums: {['model|what']: n} }]
-- Returns  1 when added, 0 when the job had added them already.
--! include ledger.lua

if redis.call('HSETNX', KEYS[3], 'counted', 1) == 0 then return 0 end
L.addEach(ARGV[1], KEYS[1], KEYS[2], 'c', cjson.decode(ARGV[4]), ARGV[2], ARGV[3])
return 1
