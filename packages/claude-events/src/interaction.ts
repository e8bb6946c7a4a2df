/**
 * Interaction assembly: which interaction each event belongs to, what a batch adds to each
 * interaction's stored state, and the root span drawn from that state when it closes.
 *
 * An interaction is one prompt and everything done for it (`prompt.id`). Child spans are sent
 * as their events arrive, parented to a root whose id is derived from the interaction, so
 * they need no state; the root is drawn once, when the interaction closes (store.ts), from
 * state kept in Redis that every worker shares.
 */
import { SpanKind, recordToAttributes, type KeyValue, type ResourceSpans, type Span, type SpanEvent } from '@ccbridge/otlp';
import { stringOf, type Attributes, type ClaudeEvent } from './events';
import { ownKeyOf, sessionOf } from './assign';
import { traceIdFor, spanIdFor } from './ids';
import { eventIdentity, mapEvent, type Contribution, type SpanDraft } from './mapping';

export const SCOPE = { name: 'claude-code-llmflow-bridge', version: '0.1.0' };

/** Nanosecond times as fixed-width decimal strings, so Redis (Lua) can compare them as text. */
export const padNs = (ns: bigint): string => ns.toString().padStart(20, '0');

export const rootSpanIdFor = (key: string): string => spanIdFor('interaction', key);

/** What one batch adds to one interaction; merged and applied in Redis in one call per batch. */
export interface InteractionUpdate {
  key: string;
  traceId: string;
  session?: string;
  /** Bounds of the interaction's work, when the batch has any (padNs). */
  start?: string;
  end?: string;
  /** JSON of the user_prompt event's attributes. */
  prompt?: string;
  /** When the prompt was made (ms): its place on the session's timeline. */
  promptAtMs?: number;
  /** JSON of the resource attributes (KeyValue[]) of the first event seen. */
  resource?: string;
  completion?: string;
  completionAt?: string;
  /** [span id, JSON Contribution]: keyed by span, so a batch applied twice counts once. */
  contributions: [string, string][];
  /** [event identity, JSON SpanEvent] for the root. */
  events: [string, string][];
}

/** A session-level event that came before any prompt of its session: held for the first one. */
export interface PendingEvent {
  session: string;
  id: string;
  /** JSON SpanEvent. */
  event: string;
}

export interface BatchPlan {
  /** Child spans, ready to export. */
  resourceSpans: ResourceSpans[];
  updates: InteractionUpdate[];
  pending: PendingEvent[];
  spans: number;
  /** Events that can belong to no interaction (not even a session id). */
  unassigned: number;
}

function toSpan(traceId: string, rootSpanId: string, d: SpanDraft): Span {
  return {
    traceId,
    spanId: d.spanId,
    parentSpanId: d.parentSpanId ?? rootSpanId,
    name: d.name,
    kind: d.kind,
    startTimeUnixNano: d.startNs.toString(),
    endTimeUnixNano: d.endNs.toString(),
    attributes: recordToAttributes(d.attributes),
    status: d.status ?? { code: 0 },
  };
}

function spanEventOf(e: ClaudeEvent): SpanEvent {
  return { timeUnixNano: e.timeNs.toString(), name: `claude_code.${e.name}`, attributes: recordToAttributes(e.attributes) };
}

/**
 * Maps a batch's events, each with its interaction key (assign.ts), to child spans and
 * per-interaction updates. Pure: no I/O.
 */
export function planBatch(events: ClaudeEvent[], keys: (string | undefined)[]): BatchPlan {
  const spansByResource = new Map<KeyValue[], Span[]>();
  const updates = new Map<string, InteractionUpdate>();
  const pending: PendingEvent[] = [];
  let spans = 0;
  let unassigned = 0;

  events.forEach((event, i) => {
    const outcome = mapEvent(event);
    const session = sessionOf(event);
    let key = keys[i];
    if (!key && session && outcome.spans.length === 0) {
      pending.push({ session, id: eventIdentity(event), event: JSON.stringify(spanEventOf(event)) });
      return;
    }
    // Spans with no prompt to belong to (older Claude Code, before its prompt arrived): the session's.
    key ??= session ? `session/${session}` : undefined;
    if (!key) {
      unassigned += 1;
      return;
    }
    const traceId = traceIdFor(key);
    const rootSpanId = rootSpanIdFor(key);
    let update = updates.get(key);
    if (!update) {
      update = { key, traceId, contributions: [], events: [] };
      update.resource = JSON.stringify(event.resource);
      if (session) update.session = session;
      updates.set(key, update);
    }
    const list = spansByResource.get(event.resource) ?? [];
    spansByResource.set(event.resource, list);
    for (const draft of outcome.spans) {
      list.push(toSpan(traceId, rootSpanId, draft));
      spans += 1;
      widen(update, draft.startNs, draft.endNs);
    }
    // A session-level event placed here by time (start-up, say) marks the root, not its extent.
    if (ownKeyOf(event) || outcome.spans.length > 0) widen(update, event.timeNs, event.timeNs);
    if (outcome.prompt) {
      update.prompt = JSON.stringify(outcome.prompt);
      update.promptAtMs = Number(event.timeNs / 1_000_000n);
    }
    if (outcome.completion !== undefined && (!update.completionAt || padNs(event.timeNs) >= update.completionAt)) {
      update.completion = outcome.completion;
      update.completionAt = padNs(event.timeNs);
    }
    const first = outcome.spans[0];
    if (outcome.contribution && first) update.contributions.push([first.spanId, JSON.stringify(outcome.contribution)]);
    if (outcome.rootEvent) update.events.push([eventIdentity(event), JSON.stringify(spanEventOf(event))]);
  });

  const resourceSpans: ResourceSpans[] = [...spansByResource]
    .filter(([, list]) => list.length > 0)
    .map(([resource, list]) => ({ resource: { attributes: resource }, scopeSpans: [{ scope: SCOPE, spans: list }] }));
  return { resourceSpans, updates: [...updates.values()], pending, spans, unassigned };
}

function widen(update: InteractionUpdate, startNs: bigint, endNs: bigint): void {
  if (update.start === undefined || padNs(startNs) < update.start) update.start = padNs(startNs);
  if (update.end === undefined || padNs(endNs) > update.end) update.end = padNs(endNs);
}

/** An interaction's state as read back from Redis when it closes. */
export interface StoredInteraction {
  key: string;
  traceId: string;
  session?: string;
  start: string;
  end: string;
  prompt?: Attributes;
  resource: KeyValue[];
  completion?: string;
  contributions: Contribution[];
  events: SpanEvent[];
}

const TOTALS: readonly [keyof Contribution, string][] = [
  ['llmRequests', 'claude_code.interaction.llm_requests'],
  ['toolCalls', 'claude_code.interaction.tool_calls'],
  ['errors', 'claude_code.interaction.errors'],
  ['inputTokens', 'claude_code.interaction.input_tokens'],
  ['outputTokens', 'claude_code.interaction.output_tokens'],
  ['cacheReadTokens', 'claude_code.interaction.cache_read_tokens'],
  ['cacheCreationTokens', 'claude_code.interaction.cache_creation_tokens'],
  ['costUsd', 'claude_code.interaction.cost_usd'],
];

/**
 * The interaction's root span. Totals use Claude Code's own names, not gen_ai.usage.*, so that
 * tools summing tokens over spans (LLMFlow does) do not count each LLM call twice.
 */
export function rootSpanOf(ix: StoredInteraction): ResourceSpans {
  const totals: Attributes = {};
  for (const [field, name] of TOTALS) {
    const sum = ix.contributions.reduce((acc, c) => acc + (c[field] ?? 0), 0);
    totals[name] = field === 'costUsd' ? Math.round(sum * 1e9) / 1e9 : sum;
  }
  const prompt = ix.prompt ?? {};
  const attributes: Attributes = {
    ...prompt,
    'gen_ai.operation.name': 'invoke_agent',
    'gen_ai.provider.name': 'anthropic',
    'gen_ai.agent.name': 'claude-code',
    'traceloop.span.kind': 'agent',
    ...totals,
  };
  if (ix.session) attributes['gen_ai.conversation.id'] = ix.session;
  const promptText = stringOf(prompt['prompt']);
  if (promptText) attributes['gen_ai.prompt'] = promptText;
  if (ix.completion) attributes['gen_ai.completion'] = ix.completion;
  if (!ix.prompt) attributes['claude_code.interaction.prompt_seen'] = false;
  const span: Span = {
    traceId: ix.traceId,
    spanId: rootSpanIdFor(ix.key),
    name: 'claude_code.interaction',
    kind: SpanKind.INTERNAL,
    startTimeUnixNano: BigInt(ix.start).toString(),
    endTimeUnixNano: BigInt(ix.end).toString(),
    attributes: recordToAttributes(attributes),
    events: [...ix.events].sort((a, b) => (BigInt(a.timeUnixNano) < BigInt(b.timeUnixNano) ? -1 : 1)),
    status: { code: 0 },
  };
  return { resource: { attributes: ix.resource }, scopeSpans: [{ scope: SCOPE, spans: [span] }] };
}
