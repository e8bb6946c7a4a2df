/**
 * The process stage as the worker runs it: a batch in, child spans out and interaction state
 * updated; and the closer that draws each interaction's root once it has gone quiet.
 */
import { countItems, type ExportRequestBySignal, type KeyValue, type ResourceSpans, type Signal } from '@ccbridge/otlp';
import type { Logger } from '@ccbridge/log';
import { assignInteractions, sessionsToLookUp } from './assign';
import { claudeEventsOf, type ClaudeEvent } from './events';
import { planBatch, rootSpanIdFor, rootSpanOf } from './interaction';
import { nativeSpansToForward, type NativeTraceMode } from './native';
import { KEEP_ALL, createRedactor, type Redactor } from './privacy';
import type { InteractionStore } from './store';

/**
 * Where spans go (the LLMFlow exporter). It throws when it can take nothing now, and otherwise
 * delivers what it can and names the spans it would not take.
 */
export type SpanSink = (resourceSpans: ResourceSpans[]) => Promise<{ refused: { spanId: string; reason: string }[] }>;

/** Some spans of a batch were refused downstream; the rest were delivered. */
export class SpansRefusedError extends Error {
  override name = 'SpansRefusedError';
}

async function deliver(sink: SpanSink, resourceSpans: ResourceSpans[]): Promise<void> {
  if (resourceSpans.length === 0) return;
  const { refused } = await sink(resourceSpans);
  if (refused.length > 0) {
    throw new SpansRefusedError(`${refused.length} span(s) refused: ${refused.map((r) => r.reason).join('; ').slice(0, 300)}`);
  }
}

export interface BatchProcessorDeps {
  store: InteractionStore;
  exportSpans: SpanSink;
  log: Logger;
  /** What to do with Claude Code's own spans (default `prefer`). */
  nativeTraces?: NativeTraceMode;
  redactor?: Redactor;
}

export interface BatchSummary {
  signal: Signal;
  events?: number;
  spans?: number;
  /** Log records that are not Claude Code events. */
  foreign?: number;
  /** Events left to Claude Code's own spans (they carry trace context). */
  native?: number;
  /** Session-level events held for the session's first prompt. */
  pending?: number;
  unassigned?: number;
  interactions?: number;
  forwarded?: number;
}

const NO_REDACTION = createRedactor(KEEP_ALL);

/** Applies the privacy policy to events; resources stay shared objects (spans group by them). */
function redactEvents(events: ClaudeEvent[], redactor: Redactor): ClaudeEvent[] {
  if (!redactor.active) return events;
  const resources = new Map<KeyValue[], KeyValue[]>();
  return events.map((e) => {
    let resource = resources.get(e.resource);
    if (!resource) resources.set(e.resource, (resource = redactor.keyValues(e.resource) ?? []));
    return { ...e, attributes: redactor.record(e.attributes), resource };
  });
}

/**
 * Handles one queued batch. State is updated before spans are exported, and both steps are
 * idempotent, so a batch retried after a failure in either step ends in the same place.
 * Redis is asked at most twice per batch: once for the timelines of sessions whose events lack
 * a prompt.id, once to apply the batch.
 */
export async function processBatch<S extends Signal>(
  deps: BatchProcessorDeps,
  signal: S,
  request: ExportRequestBySignal[S],
): Promise<BatchSummary> {
  const mode = deps.nativeTraces ?? 'prefer';
  const redactor = deps.redactor ?? NO_REDACTION;
  if (signal === 'logs') {
    const extracted = claudeEventsOf(request as ExportRequestBySignal['logs']);
    // Events with trace context have Claude Code's own spans, forwarded from /v1/traces.
    const drawn = mode === 'prefer' ? extracted.events.filter((e) => !e.traced) : extracted.events;
    const events = redactEvents(drawn, redactor);
    const timelines = await deps.store.timelines(sessionsToLookUp(events));
    const plan = planBatch(events, assignInteractions(events, timelines));
    await deps.store.apply(plan);
    await deliver(deps.exportSpans, plan.resourceSpans);
    return {
      signal,
      events: extracted.events.length,
      spans: plan.spans,
      foreign: extracted.foreign,
      native: extracted.events.length - drawn.length,
      pending: plan.pending.length,
      unassigned: plan.unassigned,
      interactions: plan.updates.length,
    };
  }
  if (signal === 'traces') {
    const forward = nativeSpansToForward((request as ExportRequestBySignal['traces']).resourceSpans ?? [], mode, redactor);
    await deliver(deps.exportSpans, forward);
    return { signal, forwarded: countItems('traces', { resourceSpans: forward }) };
  }
  // Metrics are taken off the queue so nothing piles up in Redis; they feed nothing yet.
  return { signal };
}

export interface CloserOptions {
  /** Most interactions closed per round. */
  batchSize?: number;
  /** How long to wait before retrying a root that could not be exported. */
  retryDelayMs?: number;
  /**
   * When the oldest batch not yet processed was received (ms), if any. An interaction is only
   * closed once it was due before that: quiet means no events processed, and none waiting.
   */
  backlogSinceMs?: () => Promise<number | undefined>;
}

/** Draws the roots of due interactions: one round reads, exports and marks a batch of them. */
export class InteractionCloser {
  private running: Promise<number> | undefined;

  constructor(private readonly deps: BatchProcessorDeps, private readonly options: CloserOptions = {}) {}

  /** Closes what is due (everything open when `all`); returns how many roots were drawn. */
  closeDue(all = false): Promise<number> {
    // One round at a time per process (rounds in other processes are kept apart by leases). A
    // periodic round already running serves a periodic call; a call for all waits its turn.
    if (this.running && !all) return this.running;
    const round = (this.running ?? Promise.resolve(0)).catch(() => 0).then(() => this.round(all));
    const tracked = round.finally(() => {
      if (this.running === tracked) this.running = undefined;
    });
    this.running = tracked;
    return tracked;
  }

  private async round(all: boolean): Promise<number> {
    const { store, log } = this.deps;
    const retryDelayMs = this.options.retryDelayMs ?? 5_000;
    let closed = 0;
    for (;;) {
      const now = Date.now();
      const backlog = all ? undefined : await this.options.backlogSinceMs?.();
      const due = await store.claim({ nowMs: now, dueByMs: Math.min(now, backlog ?? now), limit: this.options.batchSize ?? 100, all });
      if (due.length === 0) return closed;
      let refused: Set<string>;
      try {
        refused = new Set((await this.deps.exportSpans(due.map(rootSpanOf))).refused.map((r) => r.spanId));
      } catch (err) {
        await store.release(due.map((ix) => ix.key), retryDelayMs);
        log.warn({ interactions: due.length, err: (err as Error).message }, 'could not export interaction roots; will retry');
        return closed;
      }
      // A root LLMFlow refused is tried again later; the others are done.
      const [done, again] = [due.filter((ix) => !refused.has(rootSpanIdFor(ix.key))), due.filter((ix) => refused.has(rootSpanIdFor(ix.key)))];
      await store.markClosed(done.map((ix) => ix.key));
      if (again.length > 0) {
        await store.release(again.map((ix) => ix.key), 12 * retryDelayMs);
        log.error({ interactions: again.map((ix) => ix.key) }, 'LLMFlow refused interaction roots; will retry');
      }
      closed += done.length;
      if (done.length > 0) log.info({ interactions: done.length }, 'closed interactions');
      if (done.length === 0) return closed;
    }
  }
}
