/**
 * The lifecycle's state in Redis, shared by every worker: the scripts of `lua/` run against
 * the keys of keys.ts (@ccbridge/redis), one shard at a time, so they run unchanged on a single
 * Redis or a Redis Cluster.
 *
 * Per batch: one EVALSHA per shard the batch touches (apply.lua), plus one pipelined read of the
 * timelines of sessions whose events lack a prompt.id. Per closer round: one EVALSHA per shard
 * to claim (claim.lua) and one to settle (settle.lua) what it drew.
 */
import path from 'node:path';
import type { KeyValue } from '@ccbridge/otlp';
import {
  NAMESPACE,
  SHARDS,
  appliedKey,
  defineScript,
  keyOf,
  shardKeys,
  shardOf,
  type RedisClient,
  type ShardKeys,
} from '@ccbridge/redis';
import type { Timeline } from '../assign';
import type { Attributes } from '../events';
import type { HeldSpan } from '../spans';
import {
  SENT,
  type BatchPlan,
  type TurnUpdate,
  type PendingSpan,
  type SequenceMarks,
  type StoredTurn,
} from '../interaction';
import type { Contribution } from '../mapping';
import type { InputFact } from '../inputs';
import type {
  AgentCall,
  AgentLink,
  AgentSeen,
  AgentState,
  HeldCall,
  HeldCallPart,
  PlacedAt,
  SessionAgents,
} from '../agents';
import { DEFAULT_LIFECYCLE, systemClock, type Clock, type LifecycleConfig, type Verdict } from './lifecycle';

const LUA = path.join(__dirname, '..', '..', 'lua');

type ScriptCall = (...keysThenInput: string[]) => Promise<unknown>;
type ScriptName =
  'ccbridgeApply' | 'ccbridgeClaim' | 'ccbridgeSettle' | 'ccbridgeAgents' | 'ccbridgePlace' | 'ccbridgeMeet';
type Scripted = RedisClient & Record<ScriptName, ScriptCall>;

export interface LifecycleStoreOptions {
  /** Key namespace (tests give each store its own). */
  namespace?: string;
  config?: Partial<LifecycleConfig>;
  clock?: Clock;
}

/** What applying a batch found: interactions now due to be drawn, and late events. */
export interface ApplyOutcome {
  due: { shard: number; key: string }[];
  late: { key: string; events: number }[];
  /** Held spans (JSON HeldSpan) of interactions drawn already: to be sent now, in their trace. */
  release: { key: string; held: string }[];
}

/** cjson encodes an empty Lua table as `{}`: read either as a list. */
const list = <T>(v: unknown): T[] => (Array.isArray(v) ? (v as T[]) : []);

interface ShardWork {
  updates: TurnUpdate[];
  sequences: SequenceMarks[];
  pending: PendingSpan[];
}

export class LifecycleStore {
  readonly config: LifecycleConfig;
  readonly clock: Clock;
  private readonly redis: Scripted;
  private readonly shards: ShardKeys[];

  constructor(redis: RedisClient, options: LifecycleStoreOptions = {}) {
    this.config = { ...DEFAULT_LIFECYCLE, ...options.config };
    this.clock = options.clock ?? systemClock;
    this.shards = Array.from({ length: SHARDS }, (_, n) => shardKeys(n, options.namespace ?? NAMESPACE));
    defineScript(redis, 'ccbridgeApply', LUA, 'apply.lua', 3);
    defineScript(redis, 'ccbridgeClaim', LUA, 'claim.lua', 2);
    defineScript(redis, 'ccbridgeSettle', LUA, 'settle.lua', 2);
    defineScript(redis, 'ccbridgeAgents', LUA, 'agents.lua', 2);
    defineScript(redis, 'ccbridgePlace', LUA, 'place.lua', 2);
    defineScript(redis, 'ccbridgeMeet', LUA, 'meet.lua', 2);
    this.redis = redis as Scripted;
  }

  /** Every shard's number. */
  shardNumbers(): number[] {
    return this.shards.map((s) => s.shard);
  }

  private input(shard: ShardKeys, extra: Record<string, unknown>): string {
    return JSON.stringify({ now: this.clock.now(), cfg: this.config, templates: shard.templates, ...extra });
  }

  private run(script: ScriptName, shard: ShardKeys, extra: Record<string, unknown>): Promise<unknown> {
    return this.redis[script](shard.deadlines, shard.stats, this.input(shard, extra));
  }

  /**
   * Applies a batch's plan: one atomic script per shard it touches. With the batch's id (its
   * job's), each shard applies it once: a retry is handed back what the first run handed back.
   */
  async apply(plan: Pick<BatchPlan, 'updates' | 'pending' | 'sequences'>, batch?: string): Promise<ApplyOutcome> {
    const work = new Map<number, ShardWork>();
    const of = (session: string) => {
      const n = shardOf(session);
      let w = work.get(n);
      if (!w) work.set(n, (w = { updates: [], sequences: [], pending: [] }));
      return w;
    };
    for (const u of plan.updates) of(u.session ?? u.key).updates.push(u);
    for (const s of plan.sequences) of(s.session).sequences.push(s);
    for (const p of plan.pending) of(p.session).pending.push(p);
    const outcome: ApplyOutcome = { due: [], late: [], release: [] };
    await Promise.all(
      [...work].map(async ([n, w]) => {
        const keys = this.shards[n]!;
        const raw = await this.redis.ccbridgeApply(
          keys.deadlines,
          keys.stats,
          appliedKey(keys, batch ?? ''),
          this.input(keys, { ...w, ...(batch !== undefined && { batch }) }),
        );
        const result = JSON.parse(raw as string) as { due: unknown; late: unknown; release: unknown };
        for (const key of list<string>(result.due)) outcome.due.push({ shard: n, key });
        for (const [key, events] of list<[string, number]>(result.late)) outcome.late.push({ key, events });
        for (const [key, held] of list<[string, string]>(result.release)) outcome.release.push({ key, held });
      }),
    );
    return outcome;
  }

  /** Runs a script once per shard over the sessions of that shard; the results, flattened. */
  private async perShard<T, R>(
    script: ScriptName,
    items: T[],
    sessionOf: (item: T) => string,
    field: string,
  ): Promise<R[]> {
    const byShard = new Map<number, T[]>();
    for (const item of items) {
      const n = shardOf(sessionOf(item));
      byShard.set(n, [...(byShard.get(n) ?? []), item]);
    }
    const results = await Promise.all(
      [...byShard].map(async ([n, group]) =>
        list<R>(JSON.parse((await this.run(script, this.shards[n]!, { [field]: group })) as string)),
      ),
    );
    return results.flat();
  }

  /** Merges what a batch says about subagents, holds their spans, and reads each session's subagent state (agents.lua). */
  async agents(sessions: SessionAgents[]): Promise<AgentState[]> {
    const raw = await this.perShard<SessionAgents, RawAgentState>(
      'ccbridgeAgents',
      sessions,
      (s) => s.session,
      'sessions',
    );
    return raw.map((r) => ({
      session: r.session,
      calls: withIds(parsed<AgentCall>(r.calls)),
      agents: withIds(parsed<AgentSeen>(r.agents)),
      links: parsed<AgentLink>(r.links),
      contiguous: new Set(Object.keys(r.contiguous ?? {})),
      promptedAfter: new Set(Object.keys(r.promptedAfter ?? {})),
    }));
  }

  /** Records new links and takes the held spans of every subagent that can now be placed (place.lua). */
  async place(
    sessions: { session: string; links: [string, AgentLink][]; agents: string[] }[],
  ): Promise<PlacedAgents[]> {
    const input = sessions.map((s) => ({
      session: s.session,
      links: s.links.map(([a, l]) => [a, JSON.stringify(l)]),
      agents: s.agents,
    }));
    const raw = await this.perShard<(typeof input)[number], RawPlaced>(
      'ccbridgePlace',
      input,
      (s) => s.session,
      'sessions',
    );
    return raw.map((r) => ({
      session: r.session,
      placed: new Map(Array.isArray(r.placed) ? [] : Object.entries(r.placed ?? {})),
      spans: new Map(Object.entries(r.spans ?? {}).map(([agent, held]) => [agent, list<string>(held)])),
    }));
  }

  /**
   * Holds background Agent calls' tool spans and their subagents' totals (meet.lua); hands back
   * each call whose span and totals are both there (or whose span went without them).
   */
  async meet(items: HeldCallPart[]): Promise<HeldCall[]> {
    const byShard = new Map<number, HeldCallPart[]>();
    for (const it of items) byShard.set(shardOf(it.session), [...(byShard.get(shardOf(it.session)) ?? []), it]);
    const out = await Promise.all(
      [...byShard].map(async ([n, group]) =>
        list<HeldCall>(JSON.parse((await this.meetScript(n, 'put', group)) as string)),
      ),
    );
    return out.flat();
  }

  /** Held calls of a shard whose wait ran out (leased to the caller until it says they are sent). */
  async dueCalls(shard: number): Promise<HeldCall[]> {
    return list<HeldCall>(JSON.parse((await this.meetScript(shard, 'due', [])) as string));
  }

  /** Marks held calls handed back (meet, dueCalls) as sent. */
  async callsSent(calls: HeldCall[]): Promise<void> {
    const byShard = new Map<number, { session: string; call: string; span: boolean; totals: boolean }[]>();
    for (const c of calls) {
      const sent = { session: c.session, call: c.call, span: c.span !== undefined, totals: c.totals !== undefined };
      byShard.set(shardOf(c.session), [...(byShard.get(shardOf(c.session)) ?? []), sent]);
    }
    await Promise.all([...byShard].map(([n, group]) => this.meetScript(n, 'done', group)));
  }

  private meetScript(shard: number, mode: 'put' | 'due' | 'done', items: unknown[]): Promise<unknown> {
    const keys = this.shards[shard]!;
    return this.redis.ccbridgeMeet(keys.callDeadlines, keys.stats, this.input(keys, { mode, items }));
  }

  /**
   * Drops held subagent spans once they are sent: one pipeline per shard (a cluster takes a
   * pipeline only over keys of one master).
   */
  async forgetAgentSpans(sent: { session: string; agent: string; spanIds: string[] }[]): Promise<void> {
    const byShard = new Map<number, typeof sent>();
    for (const s of sent)
      if (s.spanIds.length > 0) byShard.set(shardOf(s.session), [...(byShard.get(shardOf(s.session)) ?? []), s]);
    await Promise.all(
      [...byShard].map(async ([n, group]) => {
        const pipeline = this.redis.pipeline();
        for (const s of group)
          pipeline.hdel(keyOf(this.shards[n]!.templates.agentSpans, `${s.session}/${s.agent}`), ...s.spanIds);
        for (const [err] of (await pipeline.exec()) ?? []) if (err) throw err;
      }),
    );
  }

  /** The prompts of each session, by start time: one pipeline per shard. */
  async timelines(sessions: string[]): Promise<Map<string, Timeline>> {
    const out = new Map<string, Timeline>();
    const byShard = new Map<number, string[]>();
    for (const s of sessions) byShard.set(shardOf(s), [...(byShard.get(shardOf(s)) ?? []), s]);
    await Promise.all(
      [...byShard].map(async ([n, group]) => {
        const pipeline = this.redis.pipeline();
        for (const s of group) pipeline.zrange(keyOf(this.shards[n]!.templates.prompts, s), 0, -1, 'WITHSCORES');
        const results = (await pipeline.exec()) ?? [];
        group.forEach((session, i) => {
          const [err, flat] = results[i] ?? [null, []];
          if (err) throw err;
          const timeline: Timeline = [];
          const members = flat as string[];
          for (let j = 0; j < members.length; j += 2)
            timeline.push({ key: members[j]!, startMs: Number(members[j + 1]) });
          if (timeline.length > 0) out.set(session, timeline);
        });
      }),
    );
    return out;
  }

  /**
   * Leases a shard's interactions whose time has come, with their state. A timer counts as run
   * out only if it ran out by `timersDueBy` (when the oldest batch still queued was received).
   */
  async claim(
    shard: number,
    { limit = 100, timersDueBy }: { limit?: number; timersDueBy?: number } = {},
  ): Promise<StoredTurn[]> {
    const raw = await this.run('ccbridgeClaim', this.shards[shard]!, {
      limit,
      timersDueBy: timersDueBy ?? this.clock.now(),
    });
    return list<ClaimedRow>(JSON.parse(raw as string)).map(storedOf);
  }

  /**
   * Marks drawn roots (later events are late) and gives the others back, to be looked at again
   * at `at`. Held spans a batch added to a drawn turn after it was claimed are handed back
   * (`release`, JSON HeldSpan), to be sent now: they are not in the root that went.
   */
  async settle(
    shard: number,
    drawn: { key: string; complete: boolean; held: string[] }[],
    retry: { key: string; at: number }[],
  ): Promise<{ drawn: number; release: { key: string; held: string }[] }> {
    if (drawn.length === 0 && retry.length === 0) return { drawn: 0, release: [] };
    const raw = await this.run('ccbridgeSettle', this.shards[shard]!, { drawn, retry });
    const result = JSON.parse(raw as string) as { drawn: number; release: unknown };
    return {
      drawn: result.drawn,
      release: list<[string, string]>(result.release).map(([key, held]) => ({ key, held })),
    };
  }

  /** Interactions not yet drawn, over every shard (each waits in its shard's deadline index). */
  async openInteractions(): Promise<number> {
    const counts = await Promise.all(this.shards.map((s) => this.redis.zcard(s.deadlines)));
    return counts.reduce((a, b) => a + b, 0);
  }

  /** Counters kept in Redis over every shard: drawn, drawn_incomplete, late_events. */
  async stats(): Promise<Record<string, number>> {
    const out: Record<string, number> = {};
    for (const h of await Promise.all(this.shards.map((s) => this.redis.hgetall(s.stats)))) {
      for (const [k, v] of Object.entries(h)) out[k] = (out[k] ?? 0) + Number(v);
    }
    return out;
  }
}

interface RawAgentState {
  session: string;
  calls?: Record<string, string>;
  agents?: Record<string, string>;
  links?: Record<string, string>;
  contiguous?: Record<string, boolean>;
  promptedAfter?: Record<string, boolean>;
}
interface RawPlaced {
  session: string;
  placed?: Record<string, PlacedAt>;
  spans?: Record<string, unknown>;
}

/** What place.lua hands back: where each subagent placed now goes, and its held spans. */
export interface PlacedAgents {
  session: string;
  placed: Map<string, PlacedAt>;
  spans: Map<string, string[]>;
}

/** A hash of JSON values as a map (cjson gives an empty hash as `{}` or `[]`). */
const parsed = <T>(hash: Record<string, string> | undefined): Map<string, T> =>
  new Map(Array.isArray(hash) ? [] : Object.entries(hash ?? {}).map(([k, v]) => [k, JSON.parse(v) as T]));

/** Records keyed by id in Redis get their id back. */
const withIds = <T extends { id: string }>(m: Map<string, T>): Map<string, T> =>
  new Map([...m].map(([id, v]) => [id, { ...v, id }]));

interface ClaimedRow {
  key: string;
  verdict: Verdict;
  state: Record<string, string>;
  contributions: unknown;
  events: unknown;
  inputs: unknown;
}

function storedOf(row: ClaimedRow): StoredTurn {
  const h = row.state;
  const events = list<string>(row.events);
  const heldIds: string[] = [];
  const unsent: string[] = [];
  for (let i = 0; i < events.length; i += 2) {
    heldIds.push(events[i]!);
    if (events[i + 1] !== SENT) unsent.push(events[i + 1]!);
  }
  return {
    key: row.key,
    traceId: h.traceId!,
    session: h.session,
    start: h.start ?? h.end ?? '0',
    end: h.end ?? h.start ?? '0',
    prompt: h.prompt ? (JSON.parse(h.prompt) as Attributes) : undefined,
    resource: h.resource ? (JSON.parse(h.resource) as KeyValue[]) : [],
    completion: h.completion,
    contributions: list<string>(row.contributions).map((c) => JSON.parse(c) as Contribution),
    held: unsent.map((e) => JSON.parse(e) as HeldSpan),
    heldIds,
    inputs: list<string>(row.inputs).map((f) => JSON.parse(f) as InputFact),
    ...(h.promptSeq !== undefined && { promptSeq: Number(h.promptSeq) }),
    verdict: row.verdict,
  };
}
