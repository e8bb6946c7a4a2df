/**
 * Draws roots: claims interactions whose time has come (claim.lua decides which), exports
 * their roots, and settles them. Called for the shards a batch completed, in the job that
 * completed them, and every tick over every shard for the timers.
 */
import type { Logger } from '@ccbridge/log';
import type { ResourceSpans } from '@ccbridge/otlp';
import { isComplete, rootSpanOf, type StoredInteraction } from '../interaction';
import type { LifecycleStore } from './store';

/**
 * Where spans go (the export stage). It throws when LLMFlow can take nothing now (the caller
 * keeps the work and tries again later); spans LLMFlow refuses for their content are its
 * business (the dead-letter store), so a resolved call means every span is settled.
 * `source` says what the spans are, for its logs.
 */
export type SpanSink = (resourceSpans: ResourceSpans[], source: 'spans' | 'roots' | 'forwarded') => Promise<void>;

export interface CloserOptions {
  store: LifecycleStore;
  exportSpans: SpanSink;
  log: Logger;
  /** Most interactions claimed per shard per call. */
  batchSize?: number;
  /** How long to wait before trying again a root that could not be exported. */
  retryDelayMs?: number;
  /**
   * When the oldest batch not yet processed was received (ms), if any. A timer only runs out
   * once it ran out before that: quiet means no events processed, and none waiting.
   */
  backlogSinceMs?: () => Promise<number | undefined>;
}

export class InteractionCloser {
  constructor(private readonly options: CloserOptions) {}

  /**
   * Draws what is due in the given shards (every shard when omitted); returns how many roots.
   * With `timers: false` (the job that just completed turns) only evidence counts: no timer is
   * let run out, so the queue's backlog need not be asked; the next timer round sees to those.
   */
  async closeDue(shards: number[] = this.options.store.shardNumbers(), { timers = true }: { timers?: boolean } = {}): Promise<number> {
    const backlog = timers ? await this.options.backlogSinceMs?.() : undefined;
    const timersDueBy = timers ? Math.min(this.options.store.clock.now(), backlog ?? Infinity) : 0;
    const drawn = await Promise.all([...new Set(shards)].map((n) => this.closeShard(n, timersDueBy)));
    return drawn.reduce((a, b) => a + b, 0);
  }

  private async closeShard(shard: number, timersDueBy: number): Promise<number> {
    const { store, log } = this.options;
    const limit = this.options.batchSize ?? 100;
    let drawn = 0;
    for (;;) {
      const claimed = await store.claim(shard, { limit, timersDueBy });
      if (claimed.length === 0) return drawn;
      const done = await this.draw(shard, claimed);
      drawn += done;
      if (done < claimed.length || claimed.length < limit) return drawn;
      log.debug({ shard, drawn }, 'drawing more roots');
    }
  }

  /** Exports the claimed interactions' roots and settles them; returns how many were drawn. */
  private async draw(shard: number, claimed: StoredInteraction[]): Promise<number> {
    const { store, log } = this.options;
    const retryDelayMs = this.options.retryDelayMs ?? 5_000;
    const now = () => store.clock.now();
    try {
      await this.options.exportSpans(claimed.map(rootSpanOf), 'roots');
    } catch (err) {
      // LLMFlow is unavailable: the only thing retried without limit.
      await store.settle(shard, [], claimed.map((ix) => ({ key: ix.key, at: now() + retryDelayMs })));
      log.warn({ interactions: claimed.length, err: (err as Error).message }, 'could not export interaction roots; will retry');
      return 0;
    }
    const done = claimed;
    await store.settle(shard, done.map((ix) => ({ key: ix.key, complete: isComplete(ix) !== false })), []);
    for (const ix of done) {
      if (isComplete(ix) === false) {
        log.warn(
          { interaction: ix.key, session: ix.session, end: ix.verdict.reason, missingEvents: ix.verdict.missing },
          'drew an incomplete interaction: its root may lack events that never arrived',
        );
      }
    }
    if (done.length > 0) log.info({ interactions: done.length, reasons: [...new Set(done.map((ix) => ix.verdict.reason))] }, 'drew interaction roots');
    return done.length;
  }
}
