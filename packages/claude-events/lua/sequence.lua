-- sequence.lua: what a session's event.sequence numbers tell: which numbers between two came
-- (L.covered), a process's start-up chain (L.chain), whether the number right after or before an
-- event came from its own process (L.follows, L.precedes), and whether numbering started again
-- (L.restarted). lifecycle.lua decides on them; subagents.lua links and releases by them.
--! include shard.lua

-- A session's event.sequence marks (`sequenceAt`): scored by the ms each was logged at, the member
-- its number zero-padded ':' that ms (one millisecond's marks come by number), so a turn's window
-- is read without every process's numbers: a resumed session keeps each one's start-up. An older
-- bridge kept them by number (`sequence`, members `seq:ms`): moved over when first looked at.
local indexed = {}
function L.times(session)
  local k, older = L.key('sequenceAt', session), L.key('sequence', session)
  if not indexed[session] then
    indexed[session] = true
    if redis.call('EXISTS', older) == 1 then
      L.addMarks(session, redis.call('ZRANGE', older, 0, -1))
      redis.call('DEL', older)
    end
  end
  return k
end

-- A mark's number, its ms and itself as `seq:ms`, from `seq:ms` or a member of `sequenceAt` (its
-- number padded to 12 digits, L.addMarks: cut, not matched, for members are read many times over).
local function parseMark(m)
  local seq, ms
  if string.sub(m, 13, 13) == ':' then seq, ms = string.sub(m, 1, 12), string.sub(m, 14) else seq, ms = string.match(m, '^(%d+):(%d+)$') end
  if seq then seq = tonumber(seq) return seq, tonumber(ms), seq .. ':' .. ms end
end

-- Adds marks (`seq:ms`) to the session's, or removes them (`forget`).
function L.addMarks(session, marks, forget)
  local args, k = {}, L.times(session)
  for _, m in ipairs(marks) do
    local seq, ms = string.match(m, '^(%d+):(%d+)$')
    if seq and not forget then args[#args + 1] = ms end
    if seq then args[#args + 1] = string.format('%012d:%s', seq, ms) end
  end
  L.inChunks(forget and 'ZREM' or 'ZADD', k, args)
  L.keep(k)
end

-- Marks of the session logged from fromMs to toMs, each as { seq, ms, `seq:ms` }.
function L.between(session, fromMs, toMs)
  local out = {}
  for _, m in ipairs(redis.call('ZRANGEBYSCORE', L.times(session), fromMs, toMs)) do out[#out + 1] = { parseMark(m) } end
  return out
end

-- Distinct sequence numbers strictly between lo and hi seen in the session and logged between
-- fromMs and toMs. The time window keeps another process of the same session (a resumed one,
-- which numbers from 0 again) from filling this one's gaps: Claude Code takes an event's
-- number and its timestamp together, so within one process both grow together.
function L.covered(session, lo, hi, fromMs, toMs)
  -- Without a session (its id was not a string) no number can be looked up: none is covered.
  if not session or hi - lo <= 1 then return 0 end
  local seen, n, offset = {}, 0, 0
  repeat -- oldest first, a page at a time, until every number is found
    local page = redis.call('ZRANGEBYSCORE', L.times(session), fromMs, toMs, 'LIMIT', offset, 64)
    for _, m in ipairs(page) do
      local seq = parseMark(m)
      if seq > lo and seq < hi and not seen[seq] then
        seen[seq], n = true, n + 1
        if n == hi - lo - 1 then return n end
      end
    end
    offset = offset + 64
  until #page < 64
  return n
end

-- A process's start-up chain before its prompt numbered hi and logged at toMs: the numbers
-- logged last before it, in order down from hi-1 with no other number between, down to lo+1
-- (fromMs: no earlier than the prompt before it, of an earlier process). Returns their marks
-- ("seq:ms"). Counting the numbers of a window alone would let another process's start-up, in
-- the window while the prompts between are still on their way, fill this one's gaps.
function L.chain(session, lo, hi, fromMs, toMs)
  local out, want, offset = {}, hi - 1, 0
  if not session or hi - lo <= 1 then return out end
  repeat -- newest first, a page at a time, up to where the chain ends
    local page = redis.call('ZREVRANGEBYSCORE', L.times(session), toMs, fromMs, 'LIMIT', offset, 64)
    for _, p in ipairs(page) do
      local seq, ms, mark = parseMark(p)
      -- Its prompt, and what it logged in the same millisecond after it, are no start-up.
      if ms < toMs or seq < hi then
        if seq == want then
          out[#out + 1] = mark
          want = want - 1
          if want <= lo then return out end
        elseif seq ~= want + 1 then
          return out
        end
      end
    end
    offset = offset + 64
  until #page < 64
  return out
end

-- Whether the number right after an event's (its mark, "seq:ms") has come from its own process:
-- a mark numbered seq+1 whose latest mark numbered seq before it, from ms on, is this one. Resumed processes
-- of a session each number from 0: the same number from another one does not tell.
function L.follows(session, mark)
  local seq, ms = parseMark(mark)
  local same, after = {}, {}
  for _, m in ipairs(L.between(session, ms, '+inf')) do
    if m[1] == seq then same[#same + 1] = { m[2], m[3] } elseif m[1] == seq + 1 then after[#after + 1] = m[2] end
  end
  for _, t in ipairs(after) do
    local latest
    for _, x in ipairs(same) do
      if x[1] <= t and (not latest or x[1] > latest[1]) then latest = x end
    end
    if latest and latest[2] == mark then return true end
  end
  return false
end

-- Whether the number right before an event's (its mark) has come from its own process: the
-- number seq-1 was logged from fromMs on (its work's start) and before it.
function L.precedes(session, mark, fromMs)
  local seq, ms = parseMark(mark)
  return L.covered(session, seq - 2, seq, fromMs, ms) == 1
end

-- Whether numbering started again (a new process: `--resume` numbers from 0 again) between a
-- prompt numbered `seq`, logged at fromMs, and toMs: a number no higher than `seq` logged then.
function L.restarted(session, seq, fromMs, toMs)
  for _, m in ipairs(L.between(session, '(' .. fromMs, toMs)) do
    if m[1] <= seq then return true end
  end
  return false
end
