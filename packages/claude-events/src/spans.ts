/** OTLP spans from the forms the bridge keeps them in: a draft (mapping.ts) sent at once, or held in Redis (HeldSpan). */
import { attributesToRecord, recordToAttributes, type KeyValue, type ResourceSpans, type Span } from '@ccbridge/otlp';
import type { Attributes } from './events';
import type { Fold, SpanDraft } from './mapping';

const SCOPE = { name: 'claude-code-llmflow-bridge', version: '0.1.0' };

/** A span held in Redis (JSON) until it can be sent: with its turn's root, or once its subagent is placed. */
export interface HeldSpan {
  spanId: string;
  name: string;
  kind: number;
  /** Unix nanoseconds, as text. */
  start: string;
  end: string;
  /** As a draft has them (not OTLP key-values): half the JSON, and nothing to convert until sent. */
  attributes: Attributes;
  status?: Span['status'];
  fold?: Fold;
  /** Stands in for a span that may still come (mapping.ts unfinishedToolSpan): drawn with its root only, never late. */
  standIn?: true;
  /** Unix ms its event was logged at (pending start-up spans: matched to their process's numbers). */
  at?: string;
  /** Its event's event.sequence (pending start-up spans), or null: read with `at` by lua/turns.lua. */
  seq?: number | null;
}

/** A draft in the form it is held in. */
export const heldOf = (d: SpanDraft): HeldSpan => ({
  ...(d.fold && { fold: d.fold }),
  spanId: d.spanId,
  name: d.name,
  kind: d.kind,
  start: d.startNs.toString(),
  end: d.endNs.toString(),
  attributes: d.attributes,
  status: d.status,
});

/** A held span from its JSON: one an older bridge held, with OTLP key-values, too. */
export function parseHeld<T extends HeldSpan>(json: string): T {
  const h = JSON.parse(json) as T & { attributes: Attributes | KeyValue[] };
  if (Array.isArray(h.attributes)) h.attributes = attributesToRecord(h.attributes);
  return h;
}

/** A held span as sent: in `traceId`, under `parentSpanId`, with `extra` attributes after its own. */
export const spanOfHeld = (traceId: string, parentSpanId: string, h: HeldSpan, extra?: Attributes): Span => ({
  traceId,
  spanId: h.spanId,
  parentSpanId,
  name: h.name,
  kind: h.kind,
  startTimeUnixNano: h.start,
  endTimeUnixNano: h.end,
  attributes: recordToAttributes(extra ? Object.assign({}, h.attributes, extra) : h.attributes),
  status: h.status ?? { code: 0 },
});

/** A draft as sent at once: in `traceId`, under its own parent or else its turn's root. */
export const spanOfDraft = (traceId: string, rootSpanId: string, d: SpanDraft): Span =>
  spanOfHeld(traceId, d.parentSpanId ?? rootSpanId, heldOf(d));

/** Spans of one resource, in the bridge's scope. */
export const resourceSpansOf = (resource: KeyValue[], spans: Span[]): ResourceSpans => ({
  resource: { attributes: resource },
  scopeSpans: [{ scope: SCOPE, spans }],
});
