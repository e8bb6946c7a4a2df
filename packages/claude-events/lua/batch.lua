-- batch.lua: one batch in one shard, in one atomic step: its turns (T.apply), its subagents and
-- the main agent's Agent calls merged, linked and placed (A.merge, A.link, A.place), and the
-- roots now due claimed (T.claim). It hands back everything that may now be sent; the caller
-- sends it, then commits what it sent (commit.lua).
--
-- KEYS[1]  the shard's deadline index (sorted set)     KEYS[2]  the shard's stats (hash)
-- KEYS[3]  the shard's held spans' deadlines (sorted set)
-- KEYS[4]  the batch's record in this shard (string, keys.ts appliedKey): what T.apply handed
--          back. A batch found there was applied already (a retry after a partial success): its
--          turns change nothing twice (late events are counted once) and it is handed back the
--          same released spans; everything else is idempotent and hands back what is still unsent.
--          A batch whose commit went through (commit.lua marks the record) is handed back nothing.
-- KEYS[5]  the shard's news for the sessions' ledgers (stream, keys.ts ledgerNews): the batch's
--          `news` (JSON), added as it is applied, so once
-- Every other key is built from ARGV[1].templates (keys.ts) and carries KEYS[1]'s hash tag: one
-- slot on a Redis Cluster.
-- ARGV[1]  JSON: { now, cfg, templates, batch?, limit,
--            sequences, updates, pending    T.apply's input (turns.lua)
--            sessions: [...],               A.merge's input per session (subagents.lua)
--            news? }                        the ledgers' news (a body)
-- ARGV[2..] the span bodies ARGV[1] names by index (L.bodies)
-- Returns  the summary (L.reply: reply item 1, JSON, then the bodies it names): { late: [[key, n]], release: [[key, json]], placed: [{ session, agent, at, spans: [json] }]
--                  (every holder of the sessions it touched that holds spans that may go),
--                  claimed: [T.claim's rows] }, or
--          { committed: true } for a batch sent and committed already
--! include turns.lua
--! include subagents.lua

local input = L.bodies(cjson.decode(ARGV[1]), ARGV)
L.init(KEYS, input)

local due, late, release
local record = input.batch and redis.call('GET', KEYS[4])
if record then
  local r = cjson.decode(record)
  -- Sent and committed already (the job failed after its commit): nothing is handed back twice.
  if r.committed then return L.reply({ committed = true }) end
  due, late, release = r.due, r.late, r.release
else
  due, late, release = T.apply(input)
  if input.news then redis.call('XADD', KEYS[5], '*', 'events', input.news) end
  if input.batch then
    redis.call('SET', KEYS[4], cjson.encode({ due = due, late = late, release = release }), 'EX', input.cfg.ttlSeconds)
  end
end

local placed, told = {}, {}
local owner = input.batch or ''
for _, s in ipairs(input.sessions) do
  local state = A.merge(s)
  A.link(state)
  A.place(s.session, state.agents, owner, placed)
  told[s.session] = true
end
for _, s in ipairs(input.sequences) do
  if not told[s.session] then A.revisit(s.session, owner, placed) end
end

-- Roots the batch completed, drawn in the same export as its spans (timers are the tick's: due.lua).
local claimed = #due > 0 and T.claim(input.limit, 0) or {}
L.flush()
return L.reply({ late = late, release = release, placed = placed, claimed = claimed })
