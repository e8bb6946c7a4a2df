-- recount.lua: what the queue's unprocessed jobs take, counted from the jobs themselves, set as
-- the queue's byte count (the receiver's bound) and returned.
--
-- The count is kept by INCRBY when a job is added and DECRBY when it is done with; a process
-- killed between the two steps leaves it off by that job. Counting again from the jobs now and
-- then puts it right (in-flight adds and completions may still be off by a job until the next).
--
-- KEYS[1]  wait (list)            KEYS[2]  active (list)          KEYS[3]  paused (list)
-- KEYS[4]  prioritized (zset)     KEYS[5]  delayed (zset)         KEYS[6]  the byte count (string)
-- ARGV[1]  the prefix of the queue's job hashes: BullMQ's own job keys, which share KEYS[1]'s
--          hash tag (the queue's), built here as BullMQ's own scripts build them.
-- Returns  the bytes counted: the length of each job's `data` field (HSTRLEN: no data is read).
local total = 0
local function count(ids)
  for _, id in ipairs(ids) do
    total = total + redis.call('HSTRLEN', ARGV[1] .. id, 'data')
  end
end
for i = 1, 3 do count(redis.call('LRANGE', KEYS[i], 0, -1)) end
for i = 4, 5 do count(redis.call('ZRANGE', KEYS[i], 0, -1)) end
redis.call('SET', KEYS[6], total)
return total
