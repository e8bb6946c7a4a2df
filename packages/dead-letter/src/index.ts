/**
 * The dead-letter store: spans LLMFlow refused for their content (after the exporter cut them
 * to fit), kept in Redis with LLMFlow's reason so that nothing refused is lost, nothing
 * refused is retried forever, and nothing refused holds back another span or root. An
 * operator lists them and replays them (`ccbridge dead-letters`) once LLMFlow can take them.
 *
 * Entries are keyed by span id, so a span refused twice (a batch processed again) is one
 * entry. The store holds at most `maxEntries`; past that the oldest go, and each time that
 * happens it is logged, with how many.
 */
import type { Logger } from '@ccbridge/log';
import type { RefusedSpan } from '@ccbridge/llmflow';
import type { ResourceSpans } from '@ccbridge/otlp';
import { deadLetterKeys, type RedisClient } from '@ccbridge/redis';
import { bridgeMetrics } from '@ccbridge/telemetry';

export interface DeadLetter extends RefusedSpan {
  traceId: string;
  /** When it was refused (ms since the epoch). */
  at: number;
  /** Where it was refused: a batch's spans, an interaction's root, a replay. */
  source: string;
}

/** Where replayed spans go: the LLMFlow exporter. */
export type ReplaySink = (resourceSpans: ResourceSpans[]) => Promise<{ refused: RefusedSpan[] }>;

export interface DeadLetterOptions {
  maxEntries: number;
  log: Logger;
  now?: () => number;
}

export class DeadLetterStore {
  private readonly keys = deadLetterKeys();

  constructor(
    private readonly redis: RedisClient,
    private readonly options: DeadLetterOptions,
  ) {}

  /**
   * Spans sent through `sink`, those LLMFlow refuses for their content recorded here at once
   * (the dead-letter policy, @ccbridge/errors): never retried by themselves, never holding back
   * the batch or the root they came with. Anything else the sink throws is the caller's.
   */
  exportThrough(sink: ReplaySink): (spans: ResourceSpans[], source: string) => Promise<void> {
    return async (spans, source) => {
      const { refused } = await sink(spans);
      await this.add(refused, source);
    };
  }

  /** Records refused spans and logs them, once, at error level. */
  async add(refused: RefusedSpan[], source: string): Promise<void> {
    if (refused.length === 0) return;
    const at = (this.options.now ?? Date.now)();
    const tx = this.redis.multi();
    for (const r of refused) {
      const traceId = r.resourceSpans.scopeSpans?.[0]?.spans?.[0]?.traceId ?? '';
      const entry: DeadLetter = { ...r, traceId, at, source };
      tx.hset(this.keys.spans, r.spanId, JSON.stringify(entry));
      tx.zadd(this.keys.index, 'NX', at, r.spanId);
    }
    tx.zcard(this.keys.index);
    const results = (await tx.exec()) ?? [];
    const size = Number(results[results.length - 1]?.[1] ?? 0);
    bridgeMetrics.deadLettered(refused.length);
    this.options.log.error(
      {
        source,
        spans: refused.map((r) => `${r.name} ${r.spanId}`),
        reasons: [...new Set(refused.map((r) => r.reason))].slice(0, 5),
        deadLetters: size,
      },
      'LLMFlow refused spans for their content; they are in the dead-letter store (ccbridge dead-letters list)',
    );
    if (size > this.options.maxEntries) await this.evict(size - this.options.maxEntries);
  }

  private async evict(excess: number): Promise<void> {
    const oldest = await this.redis.zrange(this.keys.index, 0, excess - 1);
    if (oldest.length === 0) return;
    await this.redis
      .multi()
      .hdel(this.keys.spans, ...oldest)
      .zrem(this.keys.index, ...oldest)
      .exec();
    this.options.log.warn(
      { dropped: oldest.length, maxEntries: this.options.maxEntries },
      'the dead-letter store is full: its oldest spans were dropped (BRIDGE_DEAD_LETTER_MAX)',
    );
  }

  async count(): Promise<number> {
    return this.redis.zcard(this.keys.index);
  }

  /** The oldest `limit` entries, or those of the given span ids. */
  async list({ limit = 100, ids }: { limit?: number; ids?: string[] } = {}): Promise<DeadLetter[]> {
    const wanted = ids ?? (await this.redis.zrange(this.keys.index, 0, limit - 1));
    if (wanted.length === 0) return [];
    const rows = await this.redis.hmget(this.keys.spans, ...wanted);
    return rows.filter((r): r is string => r !== null).map((r) => JSON.parse(r) as DeadLetter);
  }

  async remove(ids: string[]): Promise<void> {
    if (ids.length === 0) return;
    await this.redis
      .multi()
      .hdel(this.keys.spans, ...ids)
      .zrem(this.keys.index, ...ids)
      .exec();
  }

  /**
   * Sends entries to LLMFlow again; those it takes leave the store, those it refuses again stay
   * with the new reason. Throws (keeping every entry) when the sink cannot take anything now.
   */
  async replay(
    sink: ReplaySink,
    options: { limit?: number; ids?: string[] } = {},
  ): Promise<{ replayed: number; refused: number }> {
    const entries = await this.list(options);
    if (entries.length === 0) return { replayed: 0, refused: 0 };
    const { refused } = await sink(entries.map((e) => e.resourceSpans));
    const again = new Map(refused.map((r) => [r.spanId, r.reason]));
    await this.remove(entries.filter((e) => !again.has(e.spanId)).map((e) => e.spanId));
    const still = entries.filter((e) => again.has(e.spanId));
    if (still.length > 0) {
      const tx = this.redis.multi();
      for (const e of still) tx.hset(this.keys.spans, e.spanId, JSON.stringify({ ...e, reason: again.get(e.spanId) }));
      await tx.exec();
    }
    return { replayed: entries.length - still.length, refused: still.length };
  }
}
