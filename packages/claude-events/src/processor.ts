/**
 * The process stage as the worker runs it (processBatch tells its steps): a batch in, child spans
 * out, interaction state updated, and the roots of the turns the batch completed drawn (lifecycle/).
 */
import { countItems, type ExportRequestBySignal, type KeyValue, type Signal } from '@ccbridge/otlp';
import type { Logger } from '@ccbridge/log';
import { assignTurns, sessionsToLookUp } from './assign';
import { claudeEventsOf, entryOf, type ClaudeEvent } from './events';
import { planBatch, sequenceMarksOf, type EventRows } from './interaction';
import { agentFactsOf } from './agents';
import { drawOutcome } from './outcome';
import { nativeSpansToForward } from './native';
import type { NativeTraceMode } from '@ccbridge/native-traces';
import { KEEP_ALL, createRedactor, type Redactor } from '@ccbridge/privacy';
import type { LifecycleStore } from './lifecycle/store';
import type { TurnCloser, SpanSink } from './lifecycle/closer';
import { bridgeMetrics } from '@ccbridge/telemetry';

export interface BatchProcessorDeps {
  store: LifecycleStore;
  /** Draws the roots of the turns a batch completed. */
  closer: TurnCloser;
  exportSpans: SpanSink;
  log: Logger;
  /** What to do with Claude Code's own spans (default `prefer`). */
  nativeTraces?: NativeTraceMode;
  /** Events that are no row of their own: folded onto their rows (default) or each its own span. */
  eventRows?: EventRows;
  redactor?: Redactor;
  /** What a logs batch's events (every one, before redaction) tell the sessions' ledgers: written as the batch is applied. */
  ledgerNews?: (events: ClaudeEvent[]) => { session: string }[];
}

export interface BatchSummary {
  signal: Signal;
  events?: number;
  spans?: number;
  /** Log records that are not Claude Code events. */
  foreign?: number;
  /** Events left to Claude Code's own spans (they carry trace context). */
  native?: number;
  /** Pending (start-up) spans: session-level events' spans held for their session's first prompt. */
  pending?: number;
  unassigned?: number;
  interactions?: number;
  /** Roots drawn because this batch completed their turns. */
  drawn?: number;
  /** Events that joined interactions whose roots were already drawn. */
  late?: number;
  /** Subagents' spans placed and sent (held ones included). */
  subagentSpans?: number;
  forwarded?: number;
}

const NO_REDACTION = createRedactor(KEEP_ALL);

/** Counts a batch's events by name (ccbridge_processor_events). */
function countEvents(events: ClaudeEvent[]): void {
  const byName = new Map<string, number>();
  for (const e of events) byName.set(e.name, (byName.get(e.name) ?? 0) + 1);
  for (const [name, n] of byName) bridgeMetrics.events(name, n);
}

/** Applies the privacy policy to events; resources stay shared objects (spans group by them). */
function redactEvents(events: ClaudeEvent[], redactor: Redactor): ClaudeEvent[] {
  if (!redactor.active) return events;
  const resources = new Map<KeyValue[], KeyValue[]>();
  return events.map((e) => {
    const resource = entryOf(resources, e.resource, () => redactor.keyValues(e.resource) ?? []);
    return { ...e, attributes: redactor.record(e.attributes), resource };
  });
}

/**
 * Handles one queued batch, straight through: its events planned into spans and turn updates
 * (interaction.ts), one script per shard it touches that applies them and hands back all that may
 * now be sent (store.batch), one export, and one commit per shard that handed back work (closer.committed;
 * the first shard's when none did). A batch retried after a failure at any step is applied once (by
 * its id) and sends what was not committed.
 */
export async function processBatch<S extends Signal>(
  deps: BatchProcessorDeps,
  signal: S,
  request: ExportRequestBySignal[S],
  /** The batch's id (its job's): a batch delivered again is applied once (lua/batch.lua). */
  batch?: string,
): Promise<BatchSummary> {
  const mode = deps.nativeTraces ?? 'prefer';
  const redactor = deps.redactor ?? NO_REDACTION;
  if (signal === 'logs') {
    const extracted = claudeEventsOf(request as ExportRequestBySignal['logs']);
    countEvents(extracted.events);
    // Events with trace context have Claude Code's own spans, forwarded from /v1/traces.
    const ours = mode === 'prefer' ? extracted.events.filter((e) => !e.traced) : extracted.events;
    const events = redactEvents(ours, redactor);
    const timelines = await deps.store.timelines(sessionsToLookUp(events));
    const keys = assignTurns(events, timelines);
    // Every event's sequence number counts, those left to Claude Code's own spans too.
    const plan = planBatch(events, keys, sequenceMarksOf(extracted.events), deps.eventRows);
    const sessions = [...agentFactsOf(events, keys, plan.agentSpans).values()];
    const news = deps.ledgerNews?.(extracted.events);
    const outcomes = await deps.store.batch({ ...plan, sessions, news }, batch, deps.closer.batchSize);
    const drawn = outcomes.map((o) => drawOutcome(o, deps.log));
    // The batch's spans go with all that it let go, the roots of the turns it completed too, in
    // one export; not again once a shard committed it (commits follow the export: a retry after one).
    const sentAlready = outcomes.some((o) => o.committed);
    const spans = [...(sentAlready ? [] : plan.resourceSpans), ...drawn.flatMap((d) => d.spans)];
    if (spans.length > 0) {
      try {
        await deps.exportSpans(spans, 'spans');
      } catch (err) {
        // LLMFlow away: the roots go back to wait; the rest is handed back again to the retry.
        await Promise.all(outcomes.map((o) => deps.closer.giveBack(o.shard, o.claimed)));
        throw err;
      }
    }
    // Each shard that handed back work commits it; a shard that handed back nothing has nothing to
    // mark, but one commit (the first shard's, when none has work) tells a retry the batch went out.
    const working = outcomes.filter((o) => o.placed.length + o.claimed.length + o.release.length > 0);
    const committing = new Set(working.length > 0 ? working : outcomes.slice(0, 1));
    const roots = await Promise.all(
      outcomes.map(async (o, i) =>
        o.committed || !committing.has(o)
          ? 0
          : deps.closer.committed(o.shard, { ...drawn[i]!.commit, batch }, o.claimed),
      ),
    );
    // More came due than one claim takes (rare): the usual way for the rest.
    const more = outcomes.filter((o) => o.claimed.length >= deps.closer.batchSize).map((o) => o.shard);
    if (more.length > 0) roots.push(await deps.closer.closeDue(more, { timers: false }));
    const late = outcomes.flatMap((o) => o.late);
    const lateEvents = late.reduce((sum, l) => sum + l.events, 0);
    bridgeMetrics.lateEvents(lateEvents);
    if (lateEvents > 0)
      deps.log.info(
        { interactions: late.map((l) => l.key), events: lateEvents },
        'late events joined interactions already drawn',
      );
    return {
      signal,
      events: extracted.events.length,
      spans: plan.spans,
      foreign: extracted.foreign,
      native: extracted.events.length - ours.length,
      pending: plan.pending.length,
      unassigned: plan.unassigned,
      interactions: plan.updates.length,
      drawn: roots.reduce((a, b) => a + b, 0),
      late: lateEvents,
      subagentSpans: drawn.reduce((sum, d) => sum + d.subagentSpans, 0),
    };
  }
  if (signal === 'traces') {
    const { resourceSpans } = request as ExportRequestBySignal['traces'];
    const forward = nativeSpansToForward(resourceSpans ?? [], mode, redactor);
    if (forward.length > 0) await deps.exportSpans(forward, 'forwarded');
    return { signal, forwarded: countItems('traces', { resourceSpans: forward }) };
  }
  // Metrics are taken off the queue so nothing piles up in Redis; they feed nothing yet.
  return { signal };
}
