/**
 * Subagents in their place: Claude Code's own trace nests a subagent's spans under the
 * `claude_code.tool.execution` of the Agent (formerly Task) call that started it, in that
 * call's trace, foreground or background. Its events carry `agent_id` (and `parent_agent_id`
 * when nested) but nothing names the call, and the id is random. What links them, as read in
 * Claude Code 2.1.328 (docs/CLAUDE_CODE_EVENTS.md has the evidence), in the order tried:
 *
 * | rule           | evidence                                                                 |
 * |----------------|--------------------------------------------------------------------------|
 * | `notification` | a background agent's `<task-notification>` prompt names both: `<task-id>` |
 * |                | is the agent, `<tool-use-id>` the call (needs OTEL_LOG_USER_PROMPTS)      |
 * | `completion`   | a foreground agent's `subagent_completed` is followed at once (the next   |
 * |                | event.sequence) by its call's `tool_result` (61 of 61 agents, in parallel |
 * |                | too, whatever order they finished in)                                     |
 * | `only_open`    | when its first event was logged, exactly one call its caller made was      |
 * |                | open (decided; no result yet, or a background one not yet linked), and    |
 * |                | every event from its prompt to then has arrived, so no other call hides   |
 * | `root`         | none of those, once a later prompt has come with every number up to it    |
 * |                | (no Agent call made before it is still on its way) and it has finished (a |
 * |                | notification would have named it) or it stopped unfinished (it failed)    |
 * |                | while only foreground calls could have started it: under its prompt's     |
 * |                | root, and said so                                                         |
 *
 * The rules are applied in Redis, where the evidence is (lua/subagents.lua: A.merge, A.link,
 * A.place). Until a subagent is placed its spans are held there; once placed, each is handed back
 * when nothing may still fold into it (held.lua, H.ready) and sent as above, or under its own
 * parent if it has one, with the agent's id and type and the rule (placedSpans, below).
 */
import { attributesToRecord, recordToAttributes, type KeyValue, type ResourceSpans, type Span } from '@ccbridge/otlp';
import { entryOf, sequenceOf, stringOf, type ClaudeEvent } from './events';
import { rootSpanIdFor, traceIdFor } from './ids';
import { parseHeld, resourceSpansOf, spanOfHeld, type HeldSpan } from './spans';
import { toolExecutionSpanIdFor } from './mapping';
import { eventOrder, foldWithin, mergeHeld, unfolded } from './folds';
import { cut, eventInputFact, heldWithInputs, parsedOr, type InputFact } from './inputs';

/** Tool names of the call that starts a subagent (Agent in 2.1.3xx, Task before). */
const AGENT_TOOLS = new Set(['Agent', 'Task']);

/** An Agent tool call, as lua/subagents.lua keeps it (A.merge says what each field is). */
export interface AgentCall {
  id: string;
  caller: string;
  key: string;
  d?: number;
  r?: number;
  bg?: boolean;
  /** Its input was readable (OTEL_LOG_TOOL_DETAILS): `bg` can be trusted. */
  detail?: boolean;
  type?: string;
  /** Its input's `prompt` (cut to INPUT_MAX): what its subagent's first LLM call got. */
  prompt?: string;
}

/** A subagent seen, as lua/subagents.lua keeps it (A.merge says what each field is). */
export interface AgentSeen {
  id: string;
  parent: string;
  key: string;
  first: number;
  last: number;
  completed?: number;
  call?: number;
  type?: string;
}

export type Rule = 'notification' | 'completion' | 'only_open' | 'root';

/**
 * What an Agent call's tool span, held in the call's holder (`call:<id>`, its field `span`),
 * waits for before it goes without its subagent's totals (lua/held.lua H.meet): a background
 * call's waits for them; a foreground call's, once they could have come: its tool_result's mark
 * (`result`, "seq:ms") and when the call began (`from`, ms).
 */
export type CallWait = { wait: boolean; result?: string; from?: number };
/** The holder of an Agent call's span and totals, beside its session's subagents (lua/subagents.lua). */
export const CALL_HOLDER = 'call:';
/** A subagent's totals held for its Agent call (A.place): `held` folds onto its tool span; `at` draws them alone. */
type CallTotals = { agent: string; at: PlacedAt; held: string };
/** An Agent call the main agent made, by its tool_use_id (from its tool_result): its tool span is held in CALL_HOLDER + id. */
export function agentCallOf(e: ClaudeEvent): { call: string; background: boolean } | undefined {
  const tool = stringOf(e.attributes['tool_name']);
  const call = stringOf(e.attributes['tool_use_id']);
  if (e.name !== 'tool_result' || e.attributes['agent_id'] !== undefined || !tool || !AGENT_TOOLS.has(tool) || !call)
    return undefined;
  return { call, background: callInput(e)['run_in_background'] === true };
}

/** The spans to send for a call's holder handed back (`ids`: span, totals): its span with its totals merged under its own values, or what is there alone. */
export function heldCallSpans(holder: { session: string; spans: string[]; ids: string[] }): ResourceSpans[] {
  const { session, spans, ids } = holder;
  const [span, raw] = ['span', 'totals'].map((id) => (ids.includes(id) ? spans[ids.indexOf(id)] : undefined));
  const totals = raw ? (JSON.parse(raw) as CallTotals) : undefined;
  if (!span) {
    if (!totals) return [];
    // Its span went without them: a row of their own, under the call's execution.
    return placedSpans(placementOf(session, totals.at), totals.agent, [totals.held]).spans;
  }
  const rs = JSON.parse(span) as ResourceSpans;
  const fold = totals && parseHeld<HeldAgentSpan>(totals.held).fold;
  if (fold)
    for (const s of (rs.scopeSpans ?? []).flatMap((ss) => ss.spans ?? []))
      s.attributes = recordToAttributes(Object.assign({}, fold.attributes, attributesToRecord(s.attributes)));
  return [rs];
}

/**
 * A span of a subagent's event (`held`: JSON HeldAgentSpan), held until the subagent is placed;
 * or an Agent call's tool span (agent CALL_HOLDER + id, spanId `span`, `held`: JSON ResourceSpans, `when`).
 */
export type AgentSpan = { session: string; agent: string; spanId: string; held: string; when?: CallWait };
export interface HeldAgentSpan extends HeldSpan {
  /** Its own parent, when it has one (a tool's execution under its tool, say). */
  parent?: string;
  resource: KeyValue[];
  /** An LLM call whose answer may still come: its own event's mark ("seq:ms"); it waits for the number after it (L.follows). */
  waitsAfter?: string;
}

/** What a batch says about one session's subagents: the input of lua/subagents.lua A.merge. */
export interface SessionAgents {
  session: string;
  calls: AgentCall[];
  agents: AgentSeen[];
  notes: [agent: string, call: string][];
  spans: [agent: string, spanId: string, json: string, when?: CallWait][];
  /** Its calls and tool results (JSON InputFact, inputs.ts), kept for its later calls' inputs. */
  inputs: [agent: string, seq: string, json: string][];
}

/** The Agent call's input (tool_input, or tool_parameters), parsed when it is JSON (not when redacted, or cut). */
function callInput(e: ClaudeEvent): Record<string, unknown> {
  for (const k of ['tool_input', 'tool_parameters']) {
    const v = parsedOr(stringOf(e.attributes[k]) ?? '');
    if (v && typeof v === 'object') return v as Record<string, unknown>;
  }
  return {};
}

const NOTIFICATION = /<task-id>([^<\s]+)<\/task-id>\s*<tool-use-id>([^<\s]+)<\/tool-use-id>/g;

/** The subagent facts of a batch's events, by session (keys: each event's interaction), with the subagents' spans to hold. */
export function agentFactsOf(events: ClaudeEvent[], keys: (string | undefined)[], spans: AgentSpan[] = []) {
  const bySession = new Map<string, SessionAgents>();
  const of = (session: string) =>
    entryOf(bySession, session, () => ({ session, calls: [], agents: [], notes: [], spans: [], inputs: [] }));
  events.forEach((e, i) => {
    const session = stringOf(e.attributes['session.id']);
    const key = keys[i];
    if (!session || !key) return;
    const agent = stringOf(e.attributes['agent_id']);
    const seq = sequenceOf(e);
    const tool = stringOf(e.attributes['tool_name']);
    const id = stringOf(e.attributes['tool_use_id']);
    if (tool && AGENT_TOOLS.has(tool) && (e.name === 'tool_decision' || e.name === 'tool_result') && id) {
      const input = callInput(e);
      of(session).calls.push({
        id,
        caller: agent ?? '',
        key,
        ...(seq !== undefined && (e.name === 'tool_decision' ? { d: seq } : { r: seq })),
        ...(input['run_in_background'] === true && { bg: true }),
        ...(Object.keys(input).length > 0 && { detail: true }),
        ...(typeof input['subagent_type'] === 'string' && { type: input['subagent_type'] }),
        ...(typeof input['prompt'] === 'string' && { prompt: cut(input['prompt']) }),
      });
    }
    const fact = agent ? eventInputFact(e) : undefined;
    if (agent && fact) of(session).inputs.push([agent, String(fact.seq), JSON.stringify(fact)]);
    if (agent && seq !== undefined) {
      const type = stringOf(e.attributes['agent.name']) ?? stringOf(e.attributes['agent_type']);
      of(session).agents.push({
        id: agent,
        parent: stringOf(e.attributes['parent_agent_id']) ?? '',
        key,
        first: seq,
        last: seq,
        ...(e.name === 'subagent_completed' && { completed: seq }),
        ...(e.name === 'api_request' && { call: seq }),
        ...(type && { type }),
      });
    }
    // A prompt can decide a subagent's place even when nothing else in its batch is about
    // subagents: a notification names its call, or a later prompt lets rule `root` place it.
    if (e.name === 'user_prompt') {
      const facts = of(session);
      for (const m of (stringOf(e.attributes['prompt']) ?? '').matchAll(NOTIFICATION)) facts.notes.push([m[1]!, m[2]!]);
    }
  });
  for (const { session, agent, spanId, held, when } of spans)
    of(session).spans.push(when ? [agent, spanId, held, when] : [agent, spanId, held]);
  return bySession;
}

/** Where a placed subagent's spans go: the trace (its prompt key) and the parent span. */
export interface Placement {
  traceKey: string;
  parentSpanId: string;
  rule: Rule;
  type?: string;
  /** The call's prompt and the event.sequence of the subagent's first LLM call, whose input it was. */
  prompt?: { text: string; seq: number };
  /**
   * The event.sequence of the subagent's first LLM call while its input may still come: a
   * foreground call's prompt is logged only with its tool_result, when the subagent is done.
   */
  awaitingPrompt?: number;
  /** The subagent's calls and tool results kept so far: its calls' inputs. */
  inputs: InputFact[];
}

/** Where lua/subagents.lua, which alone decides it, found a subagent goes (A.place says what each field is). */
export interface PlacedAt {
  rule: Rule;
  key: string;
  call?: string;
  type?: string;
  prompt?: string;
  first?: number;
  result?: boolean;
  /** JSON InputFact. */
  inputs?: string[];
}

/** The span ids of a placement lua/subagents.lua found. */
export function placementOf(session: string, at: PlacedAt): Placement {
  const inputs = (Array.isArray(at.inputs) ? at.inputs : []).map((f) => JSON.parse(f) as InputFact);
  const placement = { traceKey: at.key, rule: at.rule, inputs };
  if (at.rule === 'root' || !at.call) return { ...placement, parentSpanId: rootSpanIdFor(at.key) };
  return {
    ...placement,
    parentSpanId: toolExecutionSpanIdFor(session, at.call),
    ...(at.type && { type: at.type }),
    ...(at.prompt !== undefined && at.first !== undefined && { prompt: { text: at.prompt, seq: at.first } }),
    ...(at.prompt === undefined && !at.result && at.first !== undefined && { awaitingPrompt: at.first }),
  };
}

/**
 * The placed spans, ready to export, from the held ones: folds merged where their span is among
 * them, any other fold its own span (the totals of a subagent a subagent started: the main
 * agent's meet their call in Redis). The subagent's first LLM call stays held while its input
 * (its call's prompt) may still come; `merged` are the folds merged into spans sent now (done
 * with, like those spans).
 */
export function placedSpans(
  placement: Placement,
  agent: string,
  held: string[],
): { spans: ResourceSpans[]; merged: string[] } {
  const byResource = new Map<string, { resource: KeyValue[]; spans: Span[] }>();
  const parsed = held.map((raw) => parseHeld<HeldAgentSpan>(raw));
  const { spans: all, unresolved } = foldWithin(parsed, mergeHeld, eventOrder);
  const waiting = all.find((h) => h.name === 'claude_code.llm_request' && eventOrder(h) === placement.awaitingPrompt);
  const merged = parsed
    .filter((h) => h.fold && !unresolved.includes(h) && h.fold.into !== waiting?.spanId)
    .map((h) => h.spanId);
  // Its LLM calls' inputs (inputs.ts): its tool results, kept and at hand, and its call's prompt.
  heldWithInputs(all, placement.inputs, undefined, placement.prompt && { chain: agent, ...placement.prompt });
  const extra: Record<string, string> = { 'gen_ai.agent.id': agent, 'claude_code.agent.placement': placement.rule };
  if (placement.type) extra['gen_ai.agent.name'] = placement.type;
  const own = unresolved.map((u) => unfolded(u) as HeldAgentSpan);
  const traceId = traceIdFor(placement.traceKey);
  for (const h of [...all.filter((h) => h !== waiting), ...own]) {
    const group = entryOf(byResource, JSON.stringify(h.resource), () => ({ resource: h.resource, spans: [] }));
    group.spans.push(spanOfHeld(traceId, h.parent ?? placement.parentSpanId, h, extra));
  }
  return { spans: [...byResource.values()].map((g) => resourceSpansOf(g.resource, g.spans)), merged };
}
