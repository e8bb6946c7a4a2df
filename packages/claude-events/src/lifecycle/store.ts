/**
 * The process stage's state in Redis, shared by every worker: the scripts of `lua/` run against
 * the keys of keys.ts (@ccbridge/redis), one shard at a time, each declaring the shard's keys,
 * so they run unchanged on a single Redis or a Redis Cluster.
 *
 * Per batch and shard it touches: one script that applies the batch and hands back all that may now be
 * sent (batch.lua), after the export one that commits what was sent (commit.lua; where there is something,
 * processor.ts), and one pipelined read of the timelines of sessions whose events lack a prompt.id (older
 * Claude Code). Per timers' round: two reads a shard; where something is due, due.lua then commit.lua.
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
import { entryOf, type Attributes } from '../events';
import { parseHeld } from '../spans';
import { SENT, type BatchPlan, type StoredTurn } from '../interaction';
import type { Contribution } from '../mapping';
import type { InputFact } from '../inputs';
import type { PlacedAt, SessionAgents } from '../agents';
import { DEFAULT_LIFECYCLE, systemClock, type Clock, type LifecycleConfig } from './lifecycle';

const LUA = path.join(__dirname, '..', '..', 'lua');

type ScriptCall = (...keysThenInput: (string | Buffer)[]) => Promise<string[] | string>;
type ScriptName = 'ccbridgeBatch' | 'ccbridgeCommit' | 'ccbridgeDue';
type Scripted = RedisClient & Record<ScriptName, ScriptCall>;

export interface LifecycleStoreOptions {
  /** Key namespace (tests give each store its own). */
  namespace?: string;
  config?: Partial<LifecycleConfig>;
  clock?: Clock;
}

/** A batch's work for the store: its plan (interaction.ts) and its subagent facts, with the held spans (agents.ts). */
export interface BatchWork extends Pick<BatchPlan, 'updates' | 'pending' | 'sequences'> {
  sessions: SessionAgents[];
  /** News for the sessions' ledgers (@ccbridge/sessions), each for its session's shard: written once, as the batch is applied. */
  news?: { session: string }[];
}

/** A holder batch.lua placed (a subagent, or an Agent call's: agents.ts CALL_HOLDER), with its held spans (JSON) not yet sent. */
export interface PlacedAgent {
  session: string;
  agent: string;
  at: PlacedAt;
  spans: string[];
  /** The ids of `spans`: leased to whoever was handed them until its commit (A.forget). */
  ids: string[];
}

/** What batch.lua handed back for one shard: everything that may now be sent. */
export interface ShardOutcome {
  shard: number;
  /** The batch was sent and committed here already (a retry after its commit): nothing is handed back. */
  committed: boolean;
  /** Events that joined turns whose roots were drawn already. */
  late: { key: string; events: number }[];
  /** Held spans (JSON HeldSpan) of turns drawn already: to be sent now, in their trace. */
  release: { key: string; held: string }[];
  placed: PlacedAgent[];
  /** Roots the batch made due, claimed (leased until committed). */
  claimed: StoredTurn[];
}

/** What commit.lua is told was sent (or, for roots, could not be). */
export interface Commit {
  forget?: { session: string; agent: string; spanIds: string[]; leased: string[] }[];
  drawn?: { key: string; complete: boolean; held: string[] }[];
  retry?: { key: string; at: number }[];
  /** The batch whose work this commits (its record is marked committed). */
  batch?: string;
  /** Roots drawn, news for the sessions' ledgers. */
  roots?: DrawnRoot[];
}

/** A root drawn, as the sessions' ledgers need it. */
export type DrawnRoot = Pick<StoredTurn, 'session' | 'traceId'> & { verdict: Pick<StoredTurn['verdict'], 'complete'> };

/** cjson encodes an empty Lua table as `{}`: read either as a list. */
const list = <T>(v: unknown): T[] => (Array.isArray(v) ? (v as T[]) : []);

export class LifecycleStore {
  readonly config: LifecycleConfig;
  readonly clock: Clock;
  private readonly redis: Scripted;
  private readonly shards: ShardKeys[];

  constructor(redis: RedisClient, options: LifecycleStoreOptions = {}) {
    this.config = { ...DEFAULT_LIFECYCLE, ...options.config };
    this.clock = options.clock ?? systemClock;
    this.shards = Array.from({ length: SHARDS }, (_, n) => shardKeys(n, options.namespace ?? NAMESPACE));
    defineScript(redis, 'ccbridgeBatch', LUA, 'batch.lua', 5);
    defineScript(redis, 'ccbridgeCommit', LUA, 'commit.lua', 5);
    defineScript(redis, 'ccbridgeDue', LUA, 'due.lua', 3);
    this.redis = redis as Scripted;
  }

  shardNumbers(): number[] {
    return this.shards.map((s) => s.shard);
  }

  /** Runs a script on a shard: its keys, its input and the bodies it names (shard.lua L.bodies, L.reply). */
  private async run(script: ScriptName, shard: number, input: object, more: string[] = [], bodies: string[] = []) {
    const keys = this.shards[shard]!;
    const arg = JSON.stringify({ now: this.clock.now(), cfg: this.config, templates: keys.templates, ...input });
    // As bytes: ioredis then copies them into the command, instead of measuring, joining and encoding the text again.
    const bytes = [arg, ...bodies].map((text) => Buffer.from(text));
    const reply = await this.redis[script](keys.deadlines, keys.stats, keys.callDeadlines, ...more, ...bytes);
    return bodiesIn(reply, bodies);
  }

  /**
   * Applies a batch: one atomic script per shard it touches (batch.lua), each handing back what
   * may now be sent there. With the batch's id (its job's), each shard applies its turns once:
   * a retry is handed back what the first run handed back.
   */
  async batch(work: BatchWork, batch?: string, limit = 100): Promise<ShardOutcome[]> {
    const parts = new Map<number, Required<BatchWork>>();
    const of = (session: string) =>
      entryOf(parts, shardOf(session), () => ({ updates: [], sequences: [], pending: [], sessions: [], news: [] }));
    for (const u of work.updates) of(u.session ?? u.key).updates.push(u);
    for (const s of work.sequences) of(s.session).sequences.push(s);
    for (const p of work.pending) of(p.session).pending.push(p);
    for (const s of work.sessions) of(s.session).sessions.push(s);
    for (const n of work.news ?? []) of(n.session).news.push(n);
    return Promise.all(
      [...parts].map(async ([n, w]) => {
        const bodies: string[] = [];
        const input = { ...withBodyRefs(w, bodies), limit, ...(batch !== undefined && { batch }) };
        const keys = this.shards[n]!;
        const r = await this.run('ccbridgeBatch', n, input, [appliedKey(keys, batch ?? ''), keys.ledgerNews], bodies);
        return {
          shard: n,
          committed: r.committed === true,
          late: list<[string, number]>(r.late).map(([key, events]) => ({ key, events })),
          ...handedBack(r),
        };
      }),
    );
  }

  /**
   * Marks what was sent of what a shard handed back (commit.lua): held spans, roots drawn; roots
   * not sent are looked at again at `at`. Held spans a batch added to a turn after its root was
   * claimed come back (`release`, JSON HeldSpan): not in the root that went, they are to be sent now.
   */
  async commit(shard: number, commit: Commit): Promise<{ drawn: number; release: ShardOutcome['release'] }> {
    const input = { forget: [], drawn: [], retry: [], ...commit };
    const keys = this.shards[shard]!;
    const r = await this.run('ccbridgeCommit', shard, input, [appliedKey(keys, commit.batch ?? ''), keys.ledgerNews]);
    return { drawn: r.drawn as number, release: handedBack(r).release };
  }

  /**
   * The timers' round in a shard (due.lua): leases its turns whose time has come (a timer by
   * `timersDueBy`: when the oldest batch still queued was received), and with `held` the held spans that may go.
   */
  async due(shard: number, input: { limit: number; timersDueBy: number; held: boolean }): Promise<HandedBack> {
    return handedBack(await this.run('ccbridgeDue', shard, input));
  }

  /** Those of `shards` where a root or a holder's held spans are due by now (what due.lua would take). */
  async dueShards(shards: number[]): Promise<number[]> {
    const first = (key: string) => this.redis.zrangebyscore(key, '-inf', this.clock.now(), 'LIMIT', 0, 1);
    const keys = shards.map((n) => [this.shards[n]!.deadlines, this.shards[n]!.callDeadlines]);
    const due = await Promise.all(keys.map((k) => Promise.all(k.map(first))));
    return shards.filter((_, i) => due[i]!.flat().length > 0);
  }

  /** The prompts of each session, by start time: one pipeline per shard. */
  async timelines(sessions: string[]): Promise<Map<string, Timeline>> {
    const out = new Map<string, Timeline>();
    const byShard = new Map<number, string[]>();
    for (const s of sessions) entryOf(byShard, shardOf(s), () => []).push(s);
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

  /** Interactions not yet drawn, over every shard (each waits in its shard's deadline index). */
  async openInteractions(): Promise<number> {
    const counts = await Promise.all(this.shards.map((s) => this.redis.zcard(s.deadlines)));
    return counts.reduce((a, b) => a + b, 0);
  }

  /** Counters kept in Redis over every shard: drawn, drawn_incomplete, late_events. */
  async stats(): Promise<Record<string, number>> {
    const out: Record<string, number> = {};
    for (const h of await Promise.all(this.shards.map((s) => this.redis.hgetall(s.stats))))
      for (const [k, v] of Object.entries(h)) out[k] = (out[k] ?? 0) + Number(v);
    return out;
  }
}

/**
 * The work with each span body (JSON text) moved to `bodies` and named by its index, from 1 (the
 * script's ARGV[1 + i]): bodies go as arguments of their own, not escaped inside the input.
 * The places are shard.lua L.bodies's.
 */
function withBodyRefs(w: BatchWork, bodies: string[]) {
  const ref = (body: string) => bodies.push(body);
  return {
    ...w,
    sessions: w.sessions.map((s) => ({
      ...s,
      spans: s.spans.map(([agent, id, json, ...when]) => [agent, id, ref(json), ...when]),
    })),
    updates: w.updates.map((u) => ({
      ...u,
      held: u.held.map(([id, v]) => [id, v === SENT ? v : ref(v)]),
      ...(u.prompt !== undefined && { prompt: ref(u.prompt) }),
    })),
    pending: w.pending.map((p) => ({ ...p, span: ref(p.span) })),
    news: w.news?.length ? ref(JSON.stringify(w.news)) : undefined,
  };
}

/** A script's reply (shard.lua L.reply): its summary, each body it names put back: reply item i (the summary is 1), or -i: `sent`'s i-th. */
function bodiesIn(reply: string[] | string, sent: string[]): Record<string, unknown> {
  const items = typeof reply === 'string' ? [reply] : reply;
  const out = JSON.parse(items[0]!) as Record<string, unknown>;
  const body = (i: unknown) => ((i as number) < 0 ? sent[-(i as number) - 1]! : items[(i as number) - 1]!);
  for (const r of list<[string, unknown]>(out.release)) r[1] = body(r[1]);
  for (const p of list<{ spans: unknown }>(out.placed)) p.spans = list(p.spans).map(body);
  for (const c of list<{ events: unknown[]; state: Record<string, unknown> }>(out.claimed)) {
    for (const f of ['prompt', 'completion']) if (c.state[f] !== undefined) c.state[f] = body(c.state[f]);
    const events = list<unknown>(c.events);
    for (let j = 1; j < events.length; j += 2) if (events[j] !== SENT) events[j] = body(events[j]);
  }
  return out;
}

interface ClaimedRow extends Pick<StoredTurn, 'key' | 'verdict'> {
  state: Record<string, string>;
  contributions: unknown;
  events: unknown;
  inputs: unknown;
}

/** What a script's reply hands back to send. */
type HandedBack = Pick<ShardOutcome, 'release' | 'placed' | 'claimed'>;
const handedBack = (r: Record<string, unknown>): HandedBack => ({
  release: list<[string, string]>(r.release).map(([key, held]) => ({ key, held })),
  placed: list<PlacedAgent>(r.placed).map((p) => ({ ...p, spans: list<string>(p.spans), ids: list<string>(p.ids) })),
  claimed: list<ClaimedRow>(r.claimed).map(storedOf),
});

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
    held: unsent.map((e) => parseHeld(e)),
    heldIds,
    inputs: list<string>(row.inputs).map((f) => JSON.parse(f) as InputFact),
    ...(h.promptSeq !== undefined && { promptSeq: Number(h.promptSeq) }),
    verdict: row.verdict,
  };
}
