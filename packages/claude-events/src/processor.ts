/**
 * The process stage as the worker runs it: a batch in, child spans out, interaction state
 * updated, and the roots of the turns the batch completed drawn (lifecycle/).
 */
import { countItems, type ExportRequestBySignal, type KeyValue, type ResourceSpans, type Signal } from '@ccbridge/otlp';
import type { Logger } from '@ccbridge/log';
import { assignTurns, sessionsToLookUp } from './assign';
import { claudeEventsOf, type ClaudeEvent } from './events';
import { planBatch, releasedSpansOf, sequenceMarksOf, type EventRows } from './interaction';
import {
  agentFactsOf,
  callTotalsPart,
  heldCallSpans,
  linkAgents,
  placedSpans,
  placementOf,
  type AgentSpan,
  type HeldCallPart,
} from './agents';
import { nativeSpansToForward, type NativeTraceMode } from './native';
import { KEEP_ALL, createRedactor, type Redactor } from './privacy';
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
    let resource = resources.get(e.resource);
    if (!resource) resources.set(e.resource, (resource = redactor.keyValues(e.resource) ?? []));
    return { ...e, attributes: redactor.record(e.attributes), resource };
  });
}

/**
 * Places subagents (agents.ts): the batch's facts merged and its subagent spans held, new links
 * found, and the spans of every subagent now placed sent in its Agent call's trace; the main
 * agent's Agent call spans and subagents' totals meet (meet.lua). Up to three calls to Redis per
 * shard, and only for batches with subagent activity or a prompt (a later prompt is what places
 * a subagent by rule `root`).
 */
async function placeAgents(
  deps: BatchProcessorDeps,
  events: ClaudeEvent[],
  keys: (string | undefined)[],
  spans: AgentSpan[],
  calls: HeldCallPart[],
): Promise<number> {
  const facts = agentFactsOf(events, keys);
  for (const s of spans) {
    let f = facts.get(s.session);
    if (!f) facts.set(s.session, (f = { session: s.session, calls: [], agents: [], notes: [], spans: [], inputs: [] }));
    f.spans.push([s.agent, s.spanId, s.held]);
  }
  if (facts.size === 0 && calls.length === 0) return 0;
  const states = await deps.store.agents([...facts.values()]);
  const placed = await deps.store.place(
    states.map((st) => ({ session: st.session, links: linkAgents(st), agents: [...st.agents.keys()] })),
  );
  const out: ResourceSpans[] = [];
  const sent: { session: string; agent: string; spanIds: string[] }[] = [];
  const parts = [...calls];
  let count = 0;
  for (const p of placed) {
    for (const [agent, held] of p.spans) {
      const at = p.placed.get(agent);
      if (!at) continue; // place.lua hands back the spans of placed subagents only
      const placement = placementOf(p.session, at);
      const { spans, callFolds, merged } = placedSpans(placement, agent, held);
      // A subagent's totals go onto its Agent call's tool span: they meet in meet.lua (the main
      // agent's calls), or are a row of their own.
      for (const f of callFolds) {
        const own = placedSpans({ ...placement, callSpanId: undefined }, agent, [JSON.stringify(f)]).spans;
        if (placement.mainCall && at.call) parts.push(callTotalsPart(p.session, at.call, f, own));
        else spans.push(...own);
      }
      out.push(...spans);
      sent.push({
        session: p.session,
        agent,
        spanIds: [
          ...spans.flatMap((rs) => rs.scopeSpans!.flatMap((ss) => ss.spans!.map((x) => x.spanId))),
          ...callFolds.map((f) => f.spanId),
          ...merged,
        ],
      });
      count += held.length;
      if (placement.rule === 'root')
        deps.log.warn(
          { session: p.session, agent },
          "no Agent call could be told for a subagent: its spans go under its prompt's root",
        );
    }
  }
  // Background calls' spans and their totals: those that meet now (or whose span went) are sent.
  const met = parts.length > 0 ? await deps.store.meet(parts) : [];
  out.push(...heldCallSpans(met));
  if (out.length > 0) await deps.exportSpans(out, 'spans');
  await deps.store.forgetAgentSpans(sent);
  if (met.length > 0) await deps.store.callsSent(met);
  return count;
}

/**
 * Handles one queued batch. State is updated before spans are exported, and both steps are
 * idempotent, so a batch retried after a failure in either step ends in the same place.
 * Redis is asked once per shard to apply the batch, and once more for the timelines of sessions
 * whose events lack a prompt.id; roots the batch completed are drawn before it returns, so a
 * turn is whole in LLMFlow once its last batch is processed.
 */
export async function processBatch<S extends Signal>(
  deps: BatchProcessorDeps,
  signal: S,
  request: ExportRequestBySignal[S],
  /** The batch's id (its job's): a batch delivered again is applied once (apply.lua). */
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
    const applied = await deps.store.apply(plan, batch);
    const placed = await placeAgents(deps, events, keys, plan.agentSpans, plan.calls);
    // The batch's spans go with the roots of the turns it completed, in one export; with them
    // what was to wait for a root that is drawn already.
    const roots = await deps.closer.sendWithRoots(
      [...plan.resourceSpans, ...releasedSpansOf(applied.release)],
      applied.due.map((d) => d.shard),
    );
    const late = applied.late.reduce((sum, l) => sum + l.events, 0);
    bridgeMetrics.lateEvents(late);
    if (late > 0)
      deps.log.info(
        { interactions: applied.late.map((l) => l.key), events: late },
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
      drawn: roots,
      late,
      subagentSpans: placed,
    };
  }
  if (signal === 'traces') {
    const forward = nativeSpansToForward(
      (request as ExportRequestBySignal['traces']).resourceSpans ?? [],
      mode,
      redactor,
    );
    if (forward.length > 0) await deps.exportSpans(forward, 'forwarded');
    return { signal, forwarded: countItems('traces', { resourceSpans: forward }) };
  }
  // Metrics are taken off the queue so nothing piles up in Redis; they feed nothing yet.
  return { signal };
}
