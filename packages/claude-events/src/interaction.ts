/**
 * Turn assembly: what a batch adds to each turn's stored state (its events' turns come from
 * assign.ts), and the root span drawn from that state when the turn is over. A turn is one
 * prompt and everything done for it; its state is named "interaction", after its root span
 * (docs/GLOSSARY.md). Child spans are sent as their events arrive, under a root whose id is
 * derived from the turn key; the root is drawn once, when lifecycle.lua says the turn is due.
 */
import { SpanKind, StatusCode, recordToAttributes, type KeyValue, type ResourceSpans, type Span } from '@ccbridge/otlp';
import { NS_PER_MS, entryOf, msOf, sequenceOf, stringOf, type Attributes, type ClaudeEvent } from './events';
import { sessionOf } from './assign';
import { rootSpanIdFor, traceIdFor } from './ids';
import type { Verdict } from './lifecycle/lifecycle';
import {
  llmSpanIdFor,
  mapEvent,
  toolSpanIdFor,
  toolSpanIdOfResult,
  TOTALS,
  turnEndOf,
  unfinishedToolSpan,
  type Contribution,
} from './mapping';
import { heldOf, parseHeld, resourceSpansOf, spanOfDraft, spanOfHeld, type HeldSpan } from './spans';
import { agentCallOf, CALL_HOLDER, type AgentSpan, type HeldAgentSpan } from './agents';
import { eventOrder, foldWithin, mergeHeld, resolveHeld, rootSummaryOf } from './folds';
import { problemLines } from './problems';
import { batchInputs, heldWithInputs, turnPromptOf, withInput, type InputFact } from './inputs';

/** Where events that are no row of their own go (BRIDGE_EVENT_ROWS): `fold` onto their rows, or `each` its own span. */
export type EventRows = 'fold' | 'each';

/** Nanosecond times as fixed-width decimal strings, so Redis (Lua) can compare them as text. */
export const padNs = (ns: bigint): string => ns.toString().padStart(20, '0');
function widen(bounds: [string, string], start: string, end: string): void {
  if (start < bounds[0]) bounds[0] = start;
  if (end > bounds[1]) bounds[1] = end;
}

/** What one batch adds to one turn: T.apply (lua/turns.lua) merges it into the stored state, with every merge rule. */
export interface TurnUpdate {
  key: string;
  traceId: string;
  session?: string;
  /** [earliest start, latest end] of the turn's work in the batch (padNs): its spans and events. */
  bounds: [string, string];
  /** JSON of the user_prompt event's attributes. */
  prompt?: string;
  /** The user_prompt's event.sequence, and when it was made (ms): where its turn starts. */
  promptSeq?: string;
  promptAt?: string;
  /** End markers (turnEndOf) as [event.sequence, kind, ms, request_id]. */
  ends: [string, 'response' | 'error', string, string][];
  /** request_ids that tool_decision and tool_result events name: answers that called tools, so no end. */
  toolRequests: string[];
  /** JSON KeyValue[]: the resource of the first event seen. */
  resource?: string;
  /** [when (padNs), text] of each answer text of the batch: the latest is the turn's completion. */
  completions: [string, string][];
  /** Its events carry prompt.id and event.sequence: its end can be known, not guessed. */
  evidence: boolean;
  /** [event.sequence, JSON InputFact]: its main chain's calls and tool results (inputs.ts). */
  inputs: [string, string][];
  /** Its events in the batch (late if its root is drawn already). */
  events: number;
  /** [span id, JSON Contribution]: keyed by span, so a batch applied twice counts once. */
  contributions: [string, string][];
  /** [span id, JSON HeldSpan, or SENT]: spans drawn with the root (an LLM call whose answer may still come), folds. */
  held: [string, string][];
}

/** A held span's entry once the span is sent (with its fold merged): later copies of either are not drawn. */
export const SENT = '-';

/** The event.sequence numbers a batch holds for one session: [sequence, ms], as text. */
export type SequenceMarks = { session: string; marks: [string, string][] };

/** A pending (start-up) span, JSON HeldSpan: a session-level event's, before any prompt of its session (docs/GLOSSARY.md). */
export type PendingSpan = { session: string; id: string; span: string };

export interface BatchPlan {
  /** Child spans, ready to export. */
  resourceSpans: ResourceSpans[];
  /** Spans of subagents' events, held until each subagent is placed, and the main agent's Agent calls' tool spans (agents.ts). */
  agentSpans: AgentSpan[];
  updates: TurnUpdate[];
  /** Every event's event.sequence, those drawn from elsewhere too (sequenceMarksOf). */
  sequences: SequenceMarks[];
  pending: PendingSpan[];
  spans: number;
  /** Events that can belong to no turn (not even a session id). */
  unassigned: number;
}

/** Maps a batch's events, each with its interaction key (assign.ts), to child spans and per-interaction updates. */
export function planBatch(
  events: ClaudeEvent[],
  keys: (string | undefined)[],
  sequences: SequenceMarks[] = sequenceMarksOf(events),
  rows: EventRows = 'fold',
): BatchPlan {
  const spansByResource = new Map<KeyValue[], Span[]>();
  const updates = new Map<string, TurnUpdate>();
  const pending: PendingSpan[] = [];
  const agentSpans: AgentSpan[] = [];
  const roots = new Map<string, string>();
  let spans = 0;
  let unassigned = 0;

  const outcomes = events.map(mapEvent);
  const drafts = outcomes.flatMap((o) => o.spans);
  if (rows === 'each') for (const d of drafts) delete d.fold;
  // Each LLM call's input: added now where the batch tells it, else the call waits for its root.
  const inputs = batchInputs(events, keys);
  for (const d of drafts) if (!d.fold) d.attributes = withInput(d.attributes, inputs.certain.get(d.spanId));
  const waiting = new Set(rows === 'fold' ? [...waitingForAnswers(events), ...inputs.uncertain] : []);
  // Folds whose span is in the batch merge now (not into one that waits: they wait with it); the rest go later.
  const merged = new Set<string>();
  const { unresolved } = foldWithin(
    drafts.filter((d) => d.fold || !waiting.has(d.spanId)),
    (target, attributes) => {
      mergeHeld(target, attributes);
      merged.add(target.spanId);
    },
    eventOrder,
  );
  const folded = new Set(drafts.filter((d) => d.fold && !unresolved.includes(d)));
  // The main agent's tool calls whose tool_result is in the batch: drawn by it, so no stand-in is held for them.
  const callOf = (e: ClaudeEvent) => !stringOf(e.attributes['agent_id']) && stringOf(e.attributes['tool_use_id']);
  const resulted = new Set(events.map((e) => e.name === 'tool_result' && callOf(e) && `${sessionOf(e)}\t${callOf(e)}`));

  events.forEach((event, i) => {
    const outcome = outcomes[i]!;
    const session = sessionOf(event);
    const key = keys[i];
    if (!key && session) {
      // `at` and `seq` first: lua/turns.lua reads them off the JSON's head without decoding it.
      const head = { at: String(msOf(event)), seq: sequenceOf(event) ?? null };
      for (const d of outcome.spans)
        if (!folded.has(d)) pending.push({ session, id: d.spanId, span: JSON.stringify({ ...head, ...heldOf(d) }) });
      return;
    }
    if (!key) {
      unassigned += 1;
      return;
    }
    const update = entryOf(updates, key, () => ({
      key,
      traceId: traceIdFor(key),
      ...(session && { session }),
      resource: JSON.stringify(event.resource),
      bounds: [padNs(event.timeNs), padNs(event.timeNs)] as [string, string],
      evidence: false,
      events: 0,
      ends: [],
      toolRequests: [],
      completions: [],
      contributions: [],
      held: [],
      inputs: inputs.facts.get(key) ?? [],
    }));
    const { traceId } = update;
    const rootSpanId = entryOf(roots, key, () => rootSpanIdFor(key));
    const list = entryOf(spansByResource, event.resource, () => []);
    const agent = stringOf(event.attributes['agent_id']);
    const agentCall = rows === 'fold' && session ? agentCallOf(event) : undefined;
    const seq = sequenceOf(event);
    for (const draft of outcome.spans) {
      widen(update.bounds, padNs(draft.startNs), padNs(draft.endNs));
      if (folded.has(draft) || merged.has(draft.spanId)) {
        // Sent now with its fold merged: a copy of either in a later batch is not drawn again.
        if (!agent) update.held.push([draft.spanId, SENT]);
        if (folded.has(draft)) continue;
      }
      if (agent && session) {
        // An LLM call whose answer may still come waits for the number after it (folds need their span).
        const held: HeldAgentSpan = {
          ...heldOf(draft),
          resource: event.resource,
          ...(draft.parentSpanId && { parent: draft.parentSpanId }),
          ...(waiting.has(draft.spanId) && seq !== undefined && { waitsAfter: `${seq}:${msOf(event)}` }),
        };
        agentSpans.push({ session, agent, spanId: draft.spanId, held: JSON.stringify(held) });
      } else if (draft.fold || waiting.has(draft.spanId))
        update.held.push([draft.spanId, JSON.stringify(heldOf(draft))]);
      else if (agentCall && draft.spanId === toolSpanIdFor(session!, agentCall.call)) {
        const json = JSON.stringify(resourceSpansOf(event.resource, [spanOfDraft(traceId, rootSpanId, draft)]));
        const { call, background } = agentCall;
        const after =
          !background && seq ? { result: `${seq}:${msOf(event)}`, from: Number(draft.startNs / NS_PER_MS) } : {};
        agentSpans.push({
          session: session!,
          agent: CALL_HOLDER + call,
          spanId: 'span',
          held: json,
          when: { wait: background, ...after },
        });
      } else list.push(spanOfDraft(traceId, rootSpanId, draft));
      spans += 1;
    }
    if (!agent) {
      // The main agent's tool span waits with the root until its tool_result draws it (mapping.ts).
      const unfinished = !resulted.has(`${session}\t${callOf(event)}`) && unfinishedToolSpan(event);
      if (unfinished) update.held.push([unfinished.spanId, JSON.stringify({ standIn: true, ...heldOf(unfinished) })]);
      const drawn = toolSpanIdOfResult(event);
      if (drawn) update.held.push([drawn, SENT]);
    }
    widen(update.bounds, padNs(event.timeNs), padNs(event.timeNs));
    update.events += 1;
    if (seq !== undefined && session && stringOf(event.attributes['prompt.id'])) update.evidence = true;
    if (outcome.prompt) {
      update.prompt = JSON.stringify(outcome.prompt);
      update.promptAt = String(msOf(event));
      if (seq !== undefined) update.promptSeq = String(seq);
    }
    // Without prompt.id nothing ties an end marker to its turn (only the next prompt ends it).
    const ends = stringOf(event.attributes['prompt.id']) ? turnEndOf(event) : undefined;
    const requestId = stringOf(event.attributes['request_id']) ?? '';
    if (ends && seq !== undefined) update.ends.push([String(seq), ends, String(msOf(event)), requestId]);
    if (requestId && (event.name === 'tool_decision' || event.name === 'tool_result'))
      update.toolRequests.push(requestId);
    if (outcome.completion !== undefined) update.completions.push([padNs(event.timeNs), outcome.completion]);
    const first = outcome.spans[0];
    if (outcome.contribution && first) update.contributions.push([first.spanId, JSON.stringify(outcome.contribution)]);
  });

  const resourceSpans: ResourceSpans[] = [...spansByResource]
    .filter(([, list]) => list.length > 0)
    .map(([resource, list]) => resourceSpansOf(resource, list));
  return { resourceSpans, agentSpans, updates: [...updates.values()], sequences, pending, spans, unassigned };
}

/** Events Claude Code logs right after an `api_request`, at the next numbers, about its reply (docs/CLAUDE_CODE_EVENTS.md). */
const ANSWER_EVENTS = new Set(['assistant_response', 'api_response_body']);

/**
 * The batch's LLM spans whose answer may still come: a request waits with its turn's root unless the
 * batch holds the numbers after it up to the first that is no answer event, and the body its reply names.
 */
function waitingForAnswers(events: ClaudeEvent[]): Set<string> {
  const place = (e: ClaudeEvent, seq: number) =>
    `${sessionOf(e) ?? ''}/${stringOf(e.attributes['prompt.id']) ?? ''}/${seq}`;
  const body = (e: ClaudeEvent, id: string | undefined) => `${sessionOf(e) ?? ''}/${id ?? ''}`;
  const at = new Map<string, ClaudeEvent>();
  const bodies = new Set<string>();
  for (const e of events) {
    const seq = sequenceOf(e);
    if (seq !== undefined) at.set(place(e, seq), e);
    if (e.name === 'api_request_body') bodies.add(body(e, stringOf(e.attributes['request_body_id'])));
  }
  const out = new Set<string>();
  for (const e of events) {
    const seq = sequenceOf(e);
    const requestId = stringOf(e.attributes['request_id']);
    if (e.name !== 'api_request' || seq === undefined || !requestId) continue;
    for (let k = seq + 1; ; k++) {
      const next = at.get(place(e, k));
      const bodyId = next?.name === 'api_response_body' ? stringOf(next.attributes['request_body_id']) : undefined;
      if (!next || (bodyId && !bodies.has(body(e, bodyId)))) {
        out.add(llmSpanIdFor(sessionOf(e) ?? '', requestId));
        break;
      }
      if (!ANSWER_EVENTS.has(next.name)) break;
    }
  }
  return out;
}

/** The event.sequence numbers of events, by session: a missing number tells the lifecycle an event has not arrived. */
export function sequenceMarksOf(events: ClaudeEvent[]): SequenceMarks[] {
  const bySession = new Map<string, [string, string][]>();
  for (const e of events) {
    const session = sessionOf(e);
    const seq = sequenceOf(e);
    if (!session || seq === undefined) continue;
    entryOf(bySession, session, () => []).push([String(seq), String(msOf(e))]);
  }
  return [...bySession].map(([session, marks]) => ({ session, marks }));
}

/** An interaction's state as read back from Redis when it closes. */
export interface StoredTurn extends Pick<TurnUpdate, 'key' | 'traceId' | 'session'> {
  start: string;
  end: string;
  prompt?: Attributes;
  resource: KeyValue[];
  completion?: string;
  contributions: Contribution[];
  /** Spans held for its root (start-up spans, LLM calls waiting for their answer, folds). */
  held: HeldSpan[];
  /** The ids of its held entries when claimed (sent ones too): what T.settle marks sent with the root. */
  heldIds: string[];
  /** Its main chain's calls and tool results (inputs.ts), and its prompt's event.sequence. */
  inputs: InputFact[];
  promptSeq?: number;
  /** Why it is drawn now, what is known to be missing, and whether it is complete (lua/lifecycle.lua). */
  verdict: Verdict;
}

/** The interaction's root span, with its totals (mapping.ts TOTALS). */
export function rootSpanOf(ix: StoredTurn): ResourceSpans {
  const totals: Attributes = {};
  for (const [field, name] of Object.entries(TOTALS) as [keyof typeof TOTALS, string][]) {
    const sum = ix.contributions.reduce((acc, c) => acc + (c[field] ?? 0), 0);
    totals[name] = field === 'costUsd' ? Math.round(sum * 1e9) / 1e9 : sum;
  }
  // Held spans: folds merged, those onto the root summarised on it (folds.ts). An unfinished tool stands in
  // for its span only once no tool_result can come (a newer process began, or the turn timed out).
  const gone = ix.verdict.reason === 'new_process' || ix.verdict.reason === 'turn_timeout';
  const resolved = resolveHeld(gone ? ix.held : ix.held.filter((h) => !h.standIn));
  heldWithInputs(resolved.spans, ix.inputs, turnPromptOf(ix.prompt, ix.promptSeq));
  const problems = problemLines(ix.contributions.flatMap((c) => (c.problem ? [c.problem] : [])));
  // The prompt's text goes once, as gen_ai.prompt (LLMFlow's input), not as prompt and prompt_text too.
  const { prompt: text, prompt_text: sameText, ...prompt } = ix.prompt ?? {};
  if (sameText !== undefined && sameText !== text) prompt['prompt_text'] = sameText;
  const attributes: Attributes = {
    ...prompt,
    'gen_ai.operation.name': 'invoke_agent',
    'gen_ai.provider.name': 'anthropic',
    'gen_ai.agent.name': 'claude-code',
    'traceloop.span.kind': 'agent',
    ...totals,
    ...rootSummaryOf(resolved.root),
  };
  if (problems.length > 0) attributes['claude_code.interaction.problems'] = problems;
  if (ix.session) attributes['gen_ai.conversation.id'] = ix.session;
  const promptText = stringOf(text) ?? stringOf(sameText);
  if (promptText) attributes['gen_ai.prompt'] = promptText;
  if (ix.completion) attributes['gen_ai.completion'] = ix.completion;
  if (!ix.prompt) attributes['claude_code.interaction.prompt_seen'] = false;
  // How the turn ended, and whether the root holds all of it (lua/lifecycle.lua).
  attributes['claude_code.interaction.end'] = ix.verdict.reason;
  if (ix.verdict.complete !== undefined) attributes['claude_code.interaction.complete'] = ix.verdict.complete;
  if ((ix.verdict.missing ?? 0) > 0) attributes['claude_code.interaction.missing_events'] = ix.verdict.missing!;
  // The root spans its children, the held ones (start-up, before the prompt) too.
  const start = ix.held.reduce((min, h) => (BigInt(h.start) < min ? BigInt(h.start) : min), BigInt(ix.start));
  const end = ix.held.reduce((max, h) => (BigInt(h.end) > max ? BigInt(h.end) : max), BigInt(ix.end));
  const span: Span = {
    traceId: ix.traceId,
    spanId: rootSpanIdFor(ix.key),
    name: 'claude_code.interaction',
    kind: SpanKind.INTERNAL,
    startTimeUnixNano: start.toString(),
    endTimeUnixNano: end.toString(),
    attributes: recordToAttributes(attributes),
    // A turn that ended in an error (its main request failed for good) failed.
    status:
      ix.verdict.reason === 'error'
        ? { code: StatusCode.ERROR, message: problems.at(-1) ?? 'the turn ended in an error' }
        : { code: 0 },
  };
  const held = resolved.spans.map((h) => spanOfHeld(ix.traceId, span.spanId, h));
  return resourceSpansOf(ix.resource, [span, ...held]);
}

/** Held spans of turns whose roots are drawn already (T.apply and T.settle hand them back), sent at once in their trace. */
export function releasedSpansOf(released: { key: string; held: string }[]): ResourceSpans[] {
  const byKey = new Map<string, HeldSpan[]>();
  for (const r of released) entryOf(byKey, r.key, () => []).push(parseHeld(r.held));
  const spans = [...byKey].flatMap(([key, held]) =>
    resolveHeld(held, { rootDrawn: true }).spans.map((h) => spanOfHeld(traceIdFor(key), rootSpanIdFor(key), h)),
  );
  return spans.length > 0 ? [resourceSpansOf([], spans)] : [];
}
