/**
 * Interaction state in Redis, shared by every worker, so any worker can take any batch and
 * any worker can close an interaction.
 *
 * Per interaction `<prefix>:ix:<key>` (hash: trace id, session, start/end bounds, prompt,
 * resource, completion, closed), `...:c` (span id → contribution to the totals) and `...:e`
 * (event identity → root span event). `<prefix>:due` is a sorted set of open interactions
 * scored by when they are due to close: each batch pushes its interactions' scores to
 * now + idle; a session's next prompt pulls the previous prompt's score to now.
 * `<prefix>:closing` holds the leases of interactions being closed.
 * `<prefix>:session:<id>:prompts` is a session's timeline (prompt key by start, ms), and
 * `...:pending` holds session-level events that came before any prompt of the session.
 *
 * Everything a batch changes goes in one EVALSHA; closing reads all due interactions in one
 * pipeline. Writes are idempotent (set-if-lower, set-if-higher, hash fields keyed by id), so
 * a batch applied twice leaves the same state.
 */
import type { Redis } from 'ioredis';
import type { KeyValue, SpanEvent } from '@ccbridge/otlp';
import type { Contribution } from './mapping';
import type { BatchPlan, StoredInteraction } from './interaction';
import type { Timeline } from './assign';

const APPLY = `
local prefix, now, idle, ttl = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local due = prefix .. ':due'
local function ixkey(key) return prefix .. ':ix:' .. key end
local function touch(k) for _, suffix in ipairs({'', ':c', ':e'}) do redis.call('EXPIRE', k .. suffix, ttl) end end
-- Session-level events held until the session's first prompt go to that interaction.
local function adopt(session, key)
  local held = prefix .. ':session:' .. session .. ':pending'
  local events = redis.call('HGETALL', held)
  for i = 1, #events, 2 do redis.call('HSET', ixkey(key) .. ':e', events[i], events[i + 1]) end
  if #events > 0 then redis.call('EXPIRE', ixkey(key) .. ':e', ttl) end
  redis.call('DEL', held)
end
local input = cjson.decode(ARGV[5])
for _, u in ipairs(input.updates) do
  local k = ixkey(u.key)
  local cur = redis.call('HMGET', k, 'start', 'end', 'closed', 'completionAt')
  if u.start and (not cur[1] or u.start < cur[1]) then redis.call('HSET', k, 'start', u.start) end
  if u['end'] and (not cur[2] or u['end'] > cur[2]) then redis.call('HSET', k, 'end', u['end']) end
  redis.call('HSETNX', k, 'traceId', u.traceId)
  if u.session then redis.call('HSETNX', k, 'session', u.session) end
  if u.resource then redis.call('HSETNX', k, 'resource', u.resource) end
  if u.prompt then redis.call('HSET', k, 'prompt', u.prompt) end
  if u.completion and (not cur[4] or u.completionAt >= cur[4]) then
    redis.call('HSET', k, 'completion', u.completion, 'completionAt', u.completionAt)
  end
  for _, c in ipairs(u.contributions) do redis.call('HSET', k .. ':c', c[1], c[2]) end
  for _, e in ipairs(u.events) do redis.call('HSET', k .. ':e', e[1], e[2]) end
  if not cur[3] then redis.call('ZADD', due, now + idle, u.key) end
  if u.session and u.promptAtMs then
    -- The session's timeline. A prompt ends the one before it; a prompt that is not the
    -- latest (it arrived late) is over already.
    local tl = prefix .. ':session:' .. u.session .. ':prompts'
    redis.call('ZADD', tl, u.promptAtMs, u.key)
    redis.call('EXPIRE', tl, ttl)
    local before = redis.call('ZREVRANGEBYSCORE', tl, '(' .. u.promptAtMs, '-inf', 'LIMIT', 0, 1)
    if before[1] then redis.call('ZADD', due, 'XX', now, before[1]) end
    local after = redis.call('ZRANGEBYSCORE', tl, '(' .. u.promptAtMs, '+inf', 'LIMIT', 0, 1)
    if after[1] then redis.call('ZADD', due, 'XX', now, u.key) end
    local first = redis.call('ZRANGE', tl, 0, 0)
    if first[1] then adopt(u.session, first[1]) end
  end
  touch(k)
end
for _, p in ipairs(input.pending) do
  local held = prefix .. ':session:' .. p.session .. ':pending'
  redis.call('HSET', held, p.id, p.event)
  redis.call('EXPIRE', held, ttl)
  -- A prompt may have been stored since the batch was planned.
  local first = redis.call('ZRANGE', prefix .. ':session:' .. p.session .. ':prompts', 0, 0)
  if first[1] then adopt(p.session, first[1]) end
end
return 1
`;

/**
 * Claims interactions due to close (or all open ones, on shutdown) that no other worker holds:
 * each is leased in `<prefix>:closing` until now + lease, so one worker draws each root, and a
 * worker that dies mid-way only delays it.
 */
const CLAIM = `
local due, closing = ARGV[1] .. ':due', ARGV[1] .. ':closing'
local now, lease, limit, dueBy = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[6])
local window = limit + redis.call('ZCARD', closing)
local candidates
if ARGV[5] == 'all' then
  candidates = redis.call('ZRANGE', due, 0, window - 1)
else
  candidates = redis.call('ZRANGEBYSCORE', due, '-inf', dueBy, 'LIMIT', 0, window)
end
local claimed = {}
for _, key in ipairs(candidates) do
  if #claimed >= limit then break end
  local held = redis.call('ZSCORE', closing, key)
  if not held or tonumber(held) <= now then
    redis.call('ZADD', closing, now + lease, key)
    claimed[#claimed + 1] = key
  end
end
return claimed
`;

export interface InteractionStoreOptions {
  prefix: string;
  idleMs: number;
  /** How long a claimed interaction is held before another worker may close it (a crash). */
  leaseMs?: number;
  /** How long an interaction's state outlives its last event (late events still find it). */
  ttlSeconds?: number;
}

type ScriptedRedis = Redis & {
  ccbridgeApply(prefix: string, now: number, idle: number, ttl: number, updates: string): Promise<number>;
  ccbridgeClaim(prefix: string, now: number, lease: number, limit: number, mode: string, dueBy: number): Promise<string[]>;
};

export class InteractionStore {
  private readonly redis: ScriptedRedis;
  private readonly leaseMs: number;
  private readonly ttlSeconds: number;

  constructor(redis: Redis, private readonly options: InteractionStoreOptions) {
    redis.defineCommand('ccbridgeApply', { numberOfKeys: 0, lua: APPLY });
    redis.defineCommand('ccbridgeClaim', { numberOfKeys: 0, lua: CLAIM });
    this.redis = redis as ScriptedRedis;
    this.leaseMs = options.leaseMs ?? 60_000;
    this.ttlSeconds = options.ttlSeconds ?? 24 * 3600;
  }

  /** Applies a batch's plan in one call. */
  async apply(plan: Pick<BatchPlan, 'updates' | 'pending'>, nowMs = Date.now()): Promise<void> {
    if (plan.updates.length === 0 && plan.pending.length === 0) return;
    const input = JSON.stringify({ updates: plan.updates, pending: plan.pending });
    await this.redis.ccbridgeApply(this.options.prefix, nowMs, this.options.idleMs, this.ttlSeconds, input);
  }

  /** The prompts of each session, by start time: one pipeline for all sessions. */
  async timelines(sessions: string[]): Promise<Map<string, Timeline>> {
    const out = new Map<string, Timeline>();
    if (sessions.length === 0) return out;
    const pipeline = this.redis.pipeline();
    for (const s of sessions) pipeline.zrange(`${this.options.prefix}:session:${s}:prompts`, 0, -1, 'WITHSCORES');
    const results = (await pipeline.exec()) ?? [];
    sessions.forEach((session, i) => {
      const [err, flat] = results[i] ?? [null, []];
      if (err) throw err;
      const timeline: Timeline = [];
      const list = flat as string[];
      for (let j = 0; j < list.length; j += 2) timeline.push({ key: list[j]!, startMs: Number(list[j + 1]) });
      if (timeline.length > 0) out.set(session, timeline);
    });
    return out;
  }

  /**
   * Claims interactions due to close by `dueByMs` (all open ones when `all`), leasing them from
   * `nowMs`, and reads their state.
   */
  async claim({ nowMs = Date.now(), dueByMs = nowMs, limit = 100, all = false }: { nowMs?: number; dueByMs?: number; limit?: number; all?: boolean } = {}): Promise<StoredInteraction[]> {
    const keys = await this.redis.ccbridgeClaim(this.options.prefix, nowMs, this.leaseMs, limit, all ? 'all' : 'due', dueByMs);
    if (keys.length === 0) return [];
    const pipeline = this.redis.pipeline();
    for (const key of keys) {
      const k = this.hashKey(key);
      pipeline.hgetall(k).hgetall(`${k}:c`).hgetall(`${k}:e`);
    }
    const results = (await pipeline.exec()) ?? [];
    const value = (i: number) => {
      const [err, v] = results[i] ?? [null, {}];
      if (err) throw err;
      return v as Record<string, string>;
    };
    const out: StoredInteraction[] = [];
    const stale: string[] = [];
    keys.forEach((key, i) => {
      const h = value(3 * i);
      if (!h.traceId || h.closed) {
        stale.push(key); // expired, or closed by a worker whose lease ran out
        return;
      }
      out.push({
        key,
        traceId: h.traceId,
        session: h.session,
        start: h.start ?? h.end ?? '0',
        end: h.end ?? h.start ?? '0',
        prompt: h.prompt ? JSON.parse(h.prompt) : undefined,
        resource: h.resource ? (JSON.parse(h.resource) as KeyValue[]) : [],
        completion: h.completion,
        contributions: Object.values(value(3 * i + 1)).map((c) => JSON.parse(c) as Contribution),
        events: Object.values(value(3 * i + 2)).map((e) => JSON.parse(e) as SpanEvent),
      });
    });
    if (stale.length > 0) await this.markClosed(stale);
    return out;
  }

  /** Marks interactions closed once their roots are exported: later events are late, not new. */
  async markClosed(keys: string[]): Promise<void> {
    if (keys.length === 0) return;
    const pipeline = this.redis.pipeline();
    for (const key of keys) {
      pipeline
        .hset(this.hashKey(key), 'closed', '1')
        .expire(this.hashKey(key), this.ttlSeconds)
        .zrem(`${this.options.prefix}:due`, key)
        .zrem(`${this.options.prefix}:closing`, key);
    }
    await pipeline.exec();
  }

  /** Gives claimed interactions back (their root could not be exported): claimable after delayMs. */
  async release(keys: string[], delayMs: number, nowMs = Date.now()): Promise<void> {
    if (keys.length === 0) return;
    await this.redis.zadd(`${this.options.prefix}:closing`, 'XX', ...keys.flatMap((k) => [nowMs + delayMs, k]));
  }

  /** Interactions still open. */
  async openCount(): Promise<number> {
    return this.redis.zcard(`${this.options.prefix}:due`);
  }

  private hashKey(key: string): string {
    return `${this.options.prefix}:ix:${key}`;
  }
}
