/**
 * The bridge's whole tree for a set of events, drawn in memory: child spans from planBatch, and
 * the root from the updates merged the way the Redis store merges them. For tests that look at
 * mapping and assembly without Redis.
 */
import {
  assignInteractions, claudeEventsOf, planBatch, rootSpanOf, type Contribution, type StoredInteraction,
} from '@ccbridge/claude-events';
import { attributesToRecord, type AttributeValue, type ExportLogsRequest, type Span, type SpanEvent } from '@ccbridge/otlp';

export interface FlatSpan extends Span {
  attrs: Record<string, AttributeValue>;
}

export function drawTree(requests: ExportLogsRequest[]): FlatSpan[] {
  const spans: Span[] = [];
  type Merged = StoredInteraction & { contributionById: Map<string, Contribution>; eventById: Map<string, SpanEvent> };
  const stored = new Map<string, Merged>();
  for (const request of requests) {
    const { events } = claudeEventsOf(request);
    const plan = planBatch(events, assignInteractions(events, new Map()));
    for (const rs of plan.resourceSpans) for (const ss of rs.scopeSpans ?? []) spans.push(...(ss.spans ?? []));
    for (const u of plan.updates) {
      const ix: Merged = stored.get(u.key) ?? {
        key: u.key, traceId: u.traceId, session: u.session, start: u.start ?? u.end ?? '', end: u.end ?? u.start ?? '', resource: JSON.parse(u.resource ?? '[]'),
        contributions: [], events: [], contributionById: new Map(), eventById: new Map(),
      };
      if (u.start && (!ix.start || u.start < ix.start)) ix.start = u.start;
      if (u.end && u.end > ix.end) ix.end = u.end;
      if (u.prompt) ix.prompt = JSON.parse(u.prompt);
      if (u.completion !== undefined) ix.completion = u.completion;
      for (const [id, c] of u.contributions) ix.contributionById.set(id, JSON.parse(c));
      for (const [id, e] of u.events) ix.eventById.set(id, JSON.parse(e));
      stored.set(u.key, ix);
    }
  }
  for (const ix of stored.values()) {
    const root = rootSpanOf({ ...ix, contributions: [...ix.contributionById.values()], events: [...ix.eventById.values()] });
    spans.push(...root.scopeSpans![0]!.spans!);
  }
  return spans.map((s) => ({ ...s, attrs: attributesToRecord(s.attributes) }));
}

/** "name <- parent name" for every span of a tree, sorted: its shape, whatever the ids. */
export function shapeOf(spans: Span[]): string[] {
  const byId = new Map(spans.map((s) => [s.spanId, s]));
  return spans.map((s) => `${s.name} <- ${s.parentSpanId ? byId.get(s.parentSpanId)?.name ?? 'MISSING' : '(root)'}`).sort();
}
