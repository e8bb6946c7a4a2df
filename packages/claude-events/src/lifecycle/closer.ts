/**
 * Draws roots: claims interactions whose time has come (claim.lua decides which), exports
 * their roots, and settles them. Called for the shards a batch completed, in the job that
 * completed them, and every tick over every shard for the timers.
 */
import type { Logger } from '@ccbridge/log';
import { bridgeMetrics } from '@ccbridge/telemetry';
import type { ResourceSpans } from '@ccbridge/otlp';
import { releasedSpansOf, rootSpanOf, type StoredTurn } from '../interaction';
import { heldCallSpans } from '../agents';
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
  /** How long to wait before trying again a root that could not be exported (the policy's ROOT_RETRY_MS). */
  retryDelayMs: number;
  /**
   * When the oldest batch not yet processed was received (ms), if any. A timer only runs out
   * once it ran out before that: quiet means no events processed, and none waiting.
   */
  backlogSinceMs?: () => Promise<number | undefined>;
}

export class TurnCloser {
  constructor(private readonly options: CloserOptions) {}

  /**
   * Draws what is due in the given shards (every shard when omitted); returns how many roots.
   * With `timers: false` (the job that just completed turns) only evidence counts: no timer is
   * let run out, so the queue's backlog need not be asked; the next timer round sees to those.
   */
  async closeDue(
    shards: number[] = this.options.store.shardNumbers(),
    { timers = true }: { timers?: boolean } = {},
  ): Promise<number> {
    const backlog = timers ? await this.options.backlogSinceMs?.() : undefined;
    const timersDueBy = timers ? Math.min(this.options.store.clock.now(), backlog ?? Infinity) : 0;
    const drawn = await Promise.all([...new Set(shards)].map((n) => this.closeShard(n, timersDueBy)));
    if (timers) await Promise.all([...new Set(shards)].map((n) => this.releaseCalls(n)));
    return drawn.reduce((a, b) => a + b, 0);
  }

  /**
   * Background Agent calls whose subagent's totals did not come within the turn timeout
   * (meet.lua): their spans are sent as they are (totals that came without their span, as their
   * own rows). A failed export leaves them leased, to be tried again when the lease runs out.
   */
  private async releaseCalls(shard: number): Promise<void> {
    const { store } = this.options;
    const due = await store.dueCalls(shard);
    if (due.length === 0) return;
    try {
      await this.options.exportSpans(heldCallSpans(due), 'spans');
    } catch (err) {
      this.options.log.warn(
        { calls: due.length, err: (err as Error).message },
        'could not export held background Agent calls; will retry',
      );
      return;
    }
    await store.callsSent(due);
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

  /**
   * Sends a batch's child spans together with the roots the batch completed (due in `shards`),
   * in one export: a turn that ends costs LLMFlow one request, not two. Throws when the export
   * fails (LLMFlow away): the roots go back to wait, and the caller keeps its batch.
   */
  async sendWithRoots(spans: ResourceSpans[], shards: number[]): Promise<number> {
    const { store } = this.options;
    const limit = this.options.batchSize ?? 100;
    const claims = await Promise.all(
      [...new Set(shards)].map(async (shard) => ({
        shard,
        claimed: await store.claim(shard, { limit, timersDueBy: 0 }),
      })),
    );
    const roots = claims.flatMap((c) => c.claimed.map(rootSpanOf));
    if (spans.length + roots.length === 0) return 0;
    try {
      await this.options.exportSpans([...spans, ...roots], 'spans');
    } catch (err) {
      await Promise.all(claims.map((c) => this.retryLater(c.shard, c.claimed)));
      throw err;
    }
    const drawn = await Promise.all(claims.map((c) => this.settleDrawn(c.shard, c.claimed)));
    // More came due than one claim takes (rare): the usual way for the rest.
    const more = claims.filter((c) => c.claimed.length === limit).map((c) => c.shard);
    return drawn.reduce((a, b) => a + b, 0) + (more.length > 0 ? await this.closeDue(more, { timers: false }) : 0);
  }

  /** Exports the claimed interactions' roots and settles them; returns how many were drawn. */
  private async draw(shard: number, claimed: StoredTurn[]): Promise<number> {
    try {
      await this.options.exportSpans(claimed.map(rootSpanOf), 'roots');
    } catch (err) {
      // LLMFlow is unavailable: the only thing retried without limit.
      await this.retryLater(shard, claimed);
      this.options.log.warn(
        { interactions: claimed.length, err: (err as Error).message },
        'could not export interaction roots; will retry',
      );
      return 0;
    }
    return this.settleDrawn(shard, claimed);
  }

  private async retryLater(shard: number, claimed: StoredTurn[]): Promise<void> {
    const { store } = this.options;
    const at = store.clock.now() + this.options.retryDelayMs;
    if (claimed.length > 0)
      await store.settle(
        shard,
        [],
        claimed.map((ix) => ({ key: ix.key, at })),
      );
  }

  /**
   * Marks exported roots drawn, and sends what batches held for them while they were being drawn
   * (settle.lua hands it back, marked sent: an export failing now loses it, and says so); returns
   * how many were drawn.
   */
  private async settleDrawn(shard: number, done: StoredTurn[]): Promise<number> {
    const { store, log } = this.options;
    if (done.length === 0) return 0;
    // Whether each root is complete, lifecycle.lua decided when it was claimed (verdict.complete).
    const { release } = await store.settle(
      shard,
      done.map((ix) => ({ key: ix.key, complete: ix.verdict.complete !== false, held: ix.heldIds })),
      [],
    );
    if (release.length > 0)
      await this.options.exportSpans(releasedSpansOf(release), 'spans').catch((err: Error) => {
        log.error(
          { spans: release.length, err: err.message },
          'lost spans held for roots drawn while they came: their export failed after they were marked sent',
        );
      });
    const incomplete = done.filter((ix) => ix.verdict.complete === false).length;
    bridgeMetrics.drawn(true, done.length - incomplete);
    bridgeMetrics.drawn(false, incomplete);
    for (const ix of done) {
      if (ix.verdict.complete === false) {
        log.warn(
          { interaction: ix.key, session: ix.session, end: ix.verdict.reason, missingEvents: ix.verdict.missing },
          'drew an incomplete interaction: its root may lack events that never arrived',
        );
      }
    }
    log.info(
      { interactions: done.length, reasons: [...new Set(done.map((ix) => ix.verdict.reason))] },
      'drew interaction roots',
    );
    return done.length;
  }
}
