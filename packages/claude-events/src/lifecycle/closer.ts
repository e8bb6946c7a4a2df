/**
 * Draws roots and commits what was sent. A batch's own script claims the roots it completed
 * (store.batch), and the job sends them with its spans and commits them here (`committed`);
 * every tick, the timers' round claims in each shard what is due by a timer and the held spans
 * whose lease or wait ran out (store.due), sends them and commits them (`closeDue`).
 */
import type { Logger } from '@ccbridge/log';
import { bridgeMetrics } from '@ccbridge/telemetry';
import type { ResourceSpans } from '@ccbridge/otlp';
import { releasedSpansOf, type StoredTurn } from '../interaction';
import { drawOutcome } from '../outcome';
import type { Commit, DrawnRoot, LifecycleStore } from './store';

/**
 * Where spans go (the export stage; `source` is for its logs). It throws when LLMFlow can take
 * nothing now (the caller keeps the work and tries again later); spans LLMFlow refuses for their
 * content are the dead-letter store's, so a resolved call means every span is settled.
 */
export type SpanSink = (resourceSpans: ResourceSpans[], source: 'spans' | 'roots' | 'forwarded') => Promise<void>;

export interface CloserOptions {
  store: LifecycleStore;
  exportSpans: SpanSink;
  log: Logger;
  /** How long to wait before trying again a root that could not be exported (the policy's ROOT_RETRY_MS). */
  retryDelayMs: number;
  /** When the oldest batch not yet processed was received (ms), if any: a timer runs out only before that. */
  backlogSinceMs?: () => Promise<number | undefined>;
  /** The roots drawn are news for the sessions' ledgers, left in their commit (commit.lua). */
  ledger?: boolean;
}

export class TurnCloser {
  /** Most interactions claimed per shard per call. */
  readonly batchSize = 100;

  constructor(private readonly options: CloserOptions) {}

  /** Draws what is due in the shards (all when omitted), how many roots; `timers: false` (a job's): evidence only. A timers' round runs a shard's script only where something is due (store.dueShards). */
  async closeDue(
    shards: number[] = this.options.store.shardNumbers(),
    { timers = true }: { timers?: boolean } = {},
  ): Promise<number> {
    const unique = [...new Set(shards)];
    const due = timers ? await this.options.store.dueShards(unique) : unique;
    const backlog = due.length > 0 && timers ? await this.options.backlogSinceMs?.() : undefined;
    const timersDueBy = timers ? Math.min(this.options.store.clock.now(), backlog ?? Infinity) : 0;
    return (await Promise.all(due.map((n) => this.closeShard(n, timersDueBy, timers)))).reduce((a, b) => a + b, 0);
  }

  private async closeShard(shard: number, timersDueBy: number, held: boolean): Promise<number> {
    const { store, log } = this.options;
    let drawn = 0;
    for (let round = 0; ; round++) {
      const due = await store.due(shard, { limit: this.batchSize, timersDueBy, held: held && round === 0 });
      if (due.claimed.length + due.placed.length === 0) return drawn;
      const { spans, commit } = drawOutcome(due, log);
      try {
        await this.options.exportSpans(spans, 'roots');
      } catch (err) {
        // LLMFlow is unavailable: the only thing retried without limit. Held calls' and
        // subagents' spans stay leased and come back when their lease runs out.
        await this.giveBack(shard, due.claimed);
        log.warn(
          { interactions: due.claimed.length, held: due.placed.length, err: (err as Error).message },
          'could not export interaction roots; will retry',
        );
        return drawn;
      }
      drawn += await this.committed(shard, commit, due.claimed);
      if (due.claimed.length < this.batchSize) return drawn;
      log.debug({ shard, drawn }, 'drawing more roots');
    }
  }

  /** Roots claimed but not sent (the export failed): looked at again after the retry delay. */
  async giveBack(shard: number, claimed: StoredTurn[]): Promise<void> {
    if (claimed.length === 0) return;
    const at = this.options.store.clock.now() + this.options.retryDelayMs;
    await this.options.store.commit(shard, { retry: claimed.map((ix) => ({ key: ix.key, at })) });
  }

  /**
   * Commits what a shard's spans were sent with (commit.lua), with the roots drawn as the ledgers' news; sends what
   * batches held for roots drawn while they came (marked sent already: a failing export loses it, and says so); returns how many roots.
   */
  async committed(shard: number, commit: Commit, claimed: StoredTurn[]): Promise<number> {
    const { store, log } = this.options;
    const roots: DrawnRoot[] = claimed.map((ix) => ({
      session: ix.session,
      traceId: ix.traceId,
      verdict: { complete: ix.verdict.complete },
    }));
    const { drawn, release } = await store.commit(shard, { ...commit, ...(this.options.ledger && { roots }) });
    if (release.length > 0)
      await this.options.exportSpans(releasedSpansOf(release), 'spans').catch((err: Error) => {
        log.error(
          { spans: release.length, err: err.message },
          'lost spans held for roots drawn while they came: their export failed after they were marked sent',
        );
      });
    if (claimed.length === 0) return 0;
    const incomplete = claimed.filter((ix) => ix.verdict.complete === false);
    bridgeMetrics.drawn(true, claimed.length - incomplete.length);
    bridgeMetrics.drawn(false, incomplete.length);
    for (const ix of incomplete)
      log.warn(
        { interaction: ix.key, session: ix.session, end: ix.verdict.reason, missingEvents: ix.verdict.missing },
        'drew an incomplete interaction: its root may lack events that never arrived',
      );
    log.info(
      { interactions: claimed.length, reasons: [...new Set(claimed.map((ix) => ix.verdict.reason))] },
      'drew interaction roots',
    );
    return drawn;
  }
}
