/**
 * The process stage as the worker runs it: a batch in, child spans out and interaction state
 * updated; and the closer that draws each interaction's root once it has gone quiet.
 */
import type { ExportRequestBySignal, ResourceSpans, Signal } from '@ccbridge/otlp';
import type { Logger } from '@ccbridge/log';
import { claudeEventsOf } from './events';
import { planBatch, rootSpanOf } from './interaction';
import type { InteractionStore } from './store';

/** Where spans go (the LLMFlow exporter); throws when they could not be delivered. */
export type SpanSink = (resourceSpans: ResourceSpans[]) => Promise<unknown>;

export interface BatchProcessorDeps {
  store: InteractionStore;
  exportSpans: SpanSink;
  log: Logger;
}

export interface BatchSummary {
  signal: Signal;
  events?: number;
  spans?: number;
  foreign?: number;
  unassigned?: number;
  interactions?: number;
}

/**
 * Handles one queued batch. State is updated before spans are exported, and both steps are
 * idempotent, so a batch retried after a failure in either step ends in the same place.
 */
export async function processBatch<S extends Signal>(
  deps: BatchProcessorDeps,
  signal: S,
  request: ExportRequestBySignal[S],
): Promise<BatchSummary> {
  if (signal === 'logs') {
    const { events, foreign } = claudeEventsOf(request as ExportRequestBySignal['logs']);
    const plan = planBatch(events);
    await deps.store.apply(plan.updates);
    if (plan.resourceSpans.length > 0) await deps.exportSpans(plan.resourceSpans);
    return { signal, events: events.length, spans: plan.spans, foreign, unassigned: plan.unassigned, interactions: plan.updates.length };
  }
  if (signal === 'traces') {
    // Spans that arrive as spans (Claude Code's own beta tracing, or any other tracer) go on as they are.
    const resourceSpans = (request as ExportRequestBySignal['traces']).resourceSpans ?? [];
    if (resourceSpans.length > 0) await deps.exportSpans(resourceSpans);
    return { signal };
  }
  // Metrics are taken off the queue so nothing piles up in Redis; they feed nothing yet.
  return { signal };
}

export interface CloserOptions {
  /** Most interactions closed per round. */
  batchSize?: number;
  /** How long to wait before retrying a root that could not be exported. */
  retryDelayMs?: number;
}

/** Draws the roots of due interactions: one round reads, exports and marks a batch of them. */
export class InteractionCloser {
  private running: Promise<number> | undefined;

  constructor(private readonly deps: BatchProcessorDeps, private readonly options: CloserOptions = {}) {}

  /** Closes what is due (everything open when `all`); returns how many roots were drawn. */
  closeDue(all = false): Promise<number> {
    // One round at a time per process; rounds in other processes are kept apart by the lease.
    this.running ??= this.round(all).finally(() => {
      this.running = undefined;
    });
    return this.running;
  }

  private async round(all: boolean): Promise<number> {
    let closed = 0;
    for (;;) {
      const due = await this.deps.store.claim(Date.now(), this.options.batchSize ?? 100, all);
      if (due.length === 0) return closed;
      const keys = due.map((ix) => ix.key);
      try {
        await this.deps.exportSpans(due.map(rootSpanOf));
      } catch (err) {
        await this.deps.store.release(keys, this.options.retryDelayMs ?? 5_000);
        this.deps.log.warn({ interactions: keys.length, err: (err as Error).message }, 'could not export interaction roots; will retry');
        return closed;
      }
      await this.deps.store.markClosed(keys);
      closed += keys.length;
      this.deps.log.info({ interactions: keys.length }, 'closed interactions');
    }
  }
}
