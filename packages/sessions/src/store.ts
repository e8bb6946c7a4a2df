/**
 * Each session's ledger in Redis (keys.ts, `ledgerKeys`; the scripts in ../lua): what its
 * api_request events and Claude Code's counters add up to, shared by every worker, and which
 * sessions have news to compare. The events and the roots drawn come as news that the scripts
 * applying and committing batches leave in their shard (keys.ts `ledgerNews`): `drain` takes it in.
 */
import path from 'node:path';
import { NAMESPACE, SHARDS, defineScript, ledgerKeys, metricsKeys, shardKeys, type RedisClient } from '@ccbridge/redis';
import { drawnTurns, type DrawnRoot, type DrawnTurn } from './roots';
import type { CounterContribution, EventContribution, Sums } from './sides';

const LUA = path.join(__dirname, '..', 'lua');
/** A session's ledger is kept this long after its last news (seconds). */
const SESSION_TTL_S = 7 * 24 * 3600;

type LedgerClient = RedisClient & {
  ccbridgeLedgerEvents(...args: (string | number)[]): Promise<number>;
  ccbridgeLedgerCounters(...args: (string | number)[]): Promise<number>;
  ccbridgeLedgerCheck(...args: (string | number)[]): Promise<string>;
  ccbridgeLedgerSettle(...args: (string | number)[]): Promise<number>;
};

/** A session taken for comparison: what its counters exceed its events by, beyond what was reported. */
export interface Comparison {
  session: string;
  lease: number;
  /** Counters minus events, per `model|what`; empty when they agree. */
  diffs: Sums;
  /** The stretch compared (Unix ns): from where the last comparison ended, to the latest news. */
  from: string;
  to: string;
  /** The session's latest turn (its interaction key), where a finding is drawn. */
  latestKey: string;
}

export type Verdict = 'ok' | 'events_missing' | 'counters_missing' | 'mismatch';

/** What differences (counters minus events) say: events missing where counters are above, counters missing where below. */
export function verdictOf(diffs: Sums): Verdict {
  const values = Object.values(diffs).filter((d) => d !== 0);
  if (values.length === 0) return 'ok';
  if (values.every((d) => d > 0)) return 'events_missing';
  if (values.every((d) => d < 0)) return 'counters_missing';
  return 'mismatch';
}

export interface SessionLedger {
  session: string;
  /** Tokens and cost per `model|what`, as the events say and as the counters say. */
  events: Sums;
  counters: Sums;
  /** Its turns whose roots were drawn, complete or not (those whose roots do not say count in neither). */
  turns: { drawn: number; complete: number; incomplete: number };
  /** Findings reported so far; the verdict on what they add up to, `pending` while news waits to be compared. */
  findings: number;
  verdict: Verdict | 'pending';
  /** What was reported (counters minus events, per `model|what`). */
  unaccounted: Sums;
  /** Last news (ms). */
  updatedMs: number;
}

export class LedgerStore {
  private readonly keys: ReturnType<typeof ledgerKeys>;
  /** Each shard's news (keys.ts ShardKeys.ledgerNews). */
  private readonly news: string[];
  private readonly client: LedgerClient;

  /** `namespace`: the keys' (tests give each store its own; the news is that of the LifecycleStore of the same). */
  constructor(redis: RedisClient, { namespace = NAMESPACE }: { namespace?: string } = {}) {
    this.keys = ledgerKeys(namespace);
    this.news = Array.from({ length: SHARDS }, (_, n) => shardKeys(n, namespace).ledgerNews);
    defineScript(redis, 'ccbridgeLedgerEvents', LUA, 'ledger-events.lua', 2);
    defineScript(redis, 'ccbridgeLedgerCounters', LUA, 'ledger-counters.lua', 3);
    defineScript(redis, 'ccbridgeLedgerCheck', LUA, 'ledger-check.lua', 1);
    defineScript(redis, 'ccbridgeLedgerSettle', LUA, 'ledger-settle.lua', 1);
    this.client = redis as LedgerClient;
  }

  /**
   * Takes in the news the shards hold (at most `limit` entries each): api_request events, each
   * counted once however often it comes (its `:seen` set), and roots drawn; every shard's in one
   * script and one pipeline, the ledgers being one slot. An entry leaves its shard only once taken
   * in (a round that dies before that is followed by one that takes it again, to the same effect).
   * Whether every shard's news was taken in.
   */
  async drain(limit = 200, nowMs = Date.now()): Promise<boolean> {
    const read = await Promise.all(this.news.map((key) => this.client.xrange(key, '-', '+', 'COUNT', limit)));
    const events: EventContribution[] = [];
    const roots: DrawnRoot[] = [];
    for (const entries of read)
      for (const [, fields] of entries)
        for (let i = 0; i < fields.length; i += 2) {
          // cjson writes an empty list as `{}`.
          const list = JSON.parse(fields[i + 1]!) as unknown;
          if (!Array.isArray(list)) continue;
          if (fields[i] === 'events') events.push(...(list as EventContribution[]));
          if (fields[i] === 'roots') roots.push(...(list as DrawnRoot[]));
        }
    await this.addEvents(events, nowMs);
    await this.noteTurns(drawnTurns(roots));
    await Promise.all(
      read.flatMap((entries, n) =>
        entries.length > 0 ? [this.client.xdel(this.news[n]!, ...entries.map(([id]) => id))] : [],
      ),
    );
    return read.every((entries) => entries.length < limit);
  }

  /** News entries not yet taken in, over every shard. */
  async newsWaiting(): Promise<number> {
    const lengths = await Promise.all(this.news.map((key) => this.client.xlen(key)));
    return lengths.reduce((a, b) => a + b, 0);
  }

  /** A batch's api_request events; each event counts once however often it comes. */
  async addEvents(events: EventContribution[], nowMs = Date.now()): Promise<number> {
    if (events.length === 0) return 0;
    return this.client.ccbridgeLedgerEvents(
      this.keys.sessions,
      this.keys.due,
      this.keys.session,
      nowMs,
      SESSION_TTL_S,
      JSON.stringify(events),
    );
  }

  /** A metrics job's counters; a job counts once however often it runs. */
  async addCounters(jobId: string, counters: CounterContribution[], nowMs = Date.now()): Promise<boolean> {
    if (counters.length === 0) return false;
    const added = await this.client.ccbridgeLedgerCounters(
      this.keys.sessions,
      this.keys.due,
      metricsKeys().job + jobId,
      this.keys.session,
      nowMs,
      SESSION_TTL_S,
      JSON.stringify(counters),
    );
    return added === 1;
  }

  /** Roots drawn: each session's turns, and whether they are whole. */
  async noteTurns(turns: DrawnTurn[]): Promise<void> {
    if (turns.length === 0) return;
    const pipeline = this.client.pipeline();
    for (const t of turns) {
      const key = `${this.keys.session}${t.session}:roots`;
      pipeline.hset(key, t.traceId, t.complete === undefined ? '?' : t.complete ? '1' : '0');
      pipeline.expire(key, SESSION_TTL_S);
    }
    await pipeline.exec();
  }

  /** Takes sessions last active by `cutoffMs`, leased for `leaseMs`, with what they differ by. */
  async check(cutoffMs: number, nowMs: number, leaseMs: number, limit = 100): Promise<Comparison[]> {
    const raw = await this.client.ccbridgeLedgerCheck(
      this.keys.due,
      this.keys.session,
      cutoffMs,
      leaseMs,
      nowMs,
      limit,
    );
    const parsed = JSON.parse(raw) as
      (Omit<Comparison, 'diffs'> & { diffs: Record<string, string> | null })[] | Record<string, never>;
    // An empty Lua table encodes as an object.
    return (Array.isArray(parsed) ? parsed : []).map((c) => ({
      ...c,
      diffs: Object.fromEntries(Object.entries(c.diffs ?? {}).map(([k, v]) => [k, Number(v)])),
    }));
  }

  /** A comparison done: its differences count as reported, its verdict kept. */
  async settle(c: Comparison, verdict: Verdict): Promise<void> {
    await this.client.ccbridgeLedgerSettle(
      this.keys.due,
      this.keys.session,
      c.session,
      c.lease,
      c.to,
      verdict,
      JSON.stringify(c.diffs),
    );
  }

  /** Every session's ledger, latest news first (ccbridge sessions). */
  async sessions(limit = 1000): Promise<SessionLedger[]> {
    const ids = await this.client.zrevrange(this.keys.sessions, 0, limit - 1);
    return Promise.all(
      ids.map(async (session) => {
        const key = this.keys.session + session;
        const [h, roots, due] = await Promise.all([
          this.client.hgetall(key),
          this.client.hvals(`${key}:roots`),
          this.client.zscore(this.keys.due, session),
        ]);
        const turns = {
          drawn: roots.length,
          complete: roots.filter((r) => r === '1').length,
          incomplete: roots.filter((r) => r === '0').length,
        };
        const side = (s: string) =>
          Object.fromEntries(
            Object.entries(h)
              .filter(([k]) => k.startsWith(`${s}|`))
              .map(([k, v]) => [k.slice(2), Number(v)]),
          );
        const unaccounted = Object.fromEntries(Object.entries(side('r')).filter(([, v]) => v !== 0));
        return {
          session,
          events: side('e'),
          counters: side('c'),
          turns,
          findings: Number(h.findings ?? 0),
          verdict: due !== null || !h.verdict ? 'pending' : verdictOf(unaccounted),
          unaccounted,
          updatedMs: Number(h.updated ?? 0),
        };
      }),
    );
  }
}
