/**
 * Compares each session's events with its counters once both have arrived, and says so where a
 * reader looks when they differ: a span in LLMFlow (finding.ts), a warn log line, the bridge's
 * own metrics. Run on the worker's timer.
 *
 * When is "arrived"? Claude Code exports its events every 5 s and its counters every 60 s (by
 * default), and flushes both as it exits. So a session is compared once nothing new came for
 * it for `settleMs` (longer than the counters' interval), and no batch received before then
 * still waits in a queue. What it compares is everything so far; what it reports is only what
 * was not reported before: one finding per difference, never the same difference twice.
 */
import type { Logger } from '@ccbridge/log';
import type { SpanSink } from '@ccbridge/claude-events';
import { bridgeMetrics } from '@ccbridge/telemetry';
import { findingSpan, totalsOf } from './finding';
import { verdictOf, type LedgerStore } from './store';

export interface ReconcilerOptions {
  store: LedgerStore;
  exportSpans: SpanSink;
  log: Logger;
  /** How long a session must be quiet before it is compared (ms). */
  settleMs: number;
  /** When the oldest batch not yet processed was received (ms), over the queues, if any. */
  backlogSinceMs?: () => Promise<number | undefined>;
  /** How long a worker holds a session it is comparing (ms): another takes it after, if this one died. */
  leaseMs?: number;
  now?: () => number;
}

export class Reconciler {
  constructor(private readonly options: ReconcilerOptions) {}

  /** Compares the sessions due; returns how many findings it reported. Throws when LLMFlow cannot take the finding (tried again after the lease). */
  async compareDue(): Promise<number> {
    const { store, log, settleMs } = this.options;
    const now = (this.options.now ?? Date.now)();
    const backlog = await this.options.backlogSinceMs?.();
    const cutoff = Math.min(now, backlog ?? Infinity) - settleMs;
    // The news of batches processed meanwhile first (events, roots drawn): a session is compared
    // with all that came before the cutoff, or not yet.
    if (!(await store.drain(undefined, now))) return 0;
    let findings = 0;
    for (const c of await store.check(cutoff, now, this.options.leaseMs ?? 60_000)) {
      const verdict = verdictOf(c.diffs);
      bridgeMetrics.sessionCompared(verdict);
      if (verdict !== 'ok') {
        await this.options.exportSpans([findingSpan(c, verdict)], 'spans');
        const totals = totalsOf(c.diffs);
        log.warn(
          { session: c.session, verdict, unaccounted: totals, byModel: c.diffs, from: c.from, to: c.to },
          verdict === 'events_missing'
            ? "a session's counters are above its events: events never arrived (claude_code.session.unaccounted in LLMFlow)"
            : "a session's counters do not account for its events (claude_code.session.unaccounted in LLMFlow)",
        );
        findings += 1;
      }
      await store.settle(c, verdict);
    }
    return findings;
  }
}
