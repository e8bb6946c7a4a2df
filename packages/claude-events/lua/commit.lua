-- commit.lua: after the caller sent what batch.lua or due.lua handed back: marks it sent, and
-- only it. Held spans of subagents and Agent calls sent (A.forget), roots drawn and roots given
-- back to be tried again (T.settle).
--
-- KEYS[1]  the shard's deadline index (sorted set)     KEYS[2]  the shard's stats (hash)
-- KEYS[3]  the shard's held spans' deadlines (sorted set)
-- KEYS[4]  the batch's record in this shard (batch.lua), when `batch` is given only marked committed
--          (what batch.lua kept to hand back is not needed again): a retry of the job is handed back nothing
-- KEYS[5]  the shard's news for the sessions' ledgers (stream, keys.ts ledgerNews): `roots`, added here
-- Every other key is built from ARGV[1].templates and carries KEYS[1]'s hash tag.
-- ARGV[1]  JSON: { now, cfg, templates, batch?, roots?,    roots: the roots drawn, news for the ledgers
--            forget: [{ session, agent, spanIds }],     subagent spans sent
--            drawn:  [{ key, complete, held: [id] }],     roots sent (T.settle)
--            retry:  [{ key, at }] }                      roots not sent: looked at again at `at`
-- Returns  the summary (L.reply): { drawn: n, release: [[key, json]] }   release: held spans that came while their
--          root was being drawn, to be sent now (T.settle)
--! include turns.lua
--! include subagents.lua

local input = cjson.decode(ARGV[1])
L.init(KEYS, input)
A.forget(input.forget)
local drawn, release = T.settle(input.drawn, input.retry)
if input.roots and #input.roots > 0 then redis.call('XADD', KEYS[5], '*', 'roots', cjson.encode(input.roots)) end
L.flush()
if input.batch then redis.call('SET', KEYS[4], '{"committed":true}', 'EX', input.cfg.ttlSeconds) end
return L.reply({ drawn = drawn, release = release })
