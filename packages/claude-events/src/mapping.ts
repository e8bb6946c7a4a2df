/**
 * Where a Claude Code event becomes a span: the whole mapping, one entry per event. A row earns
 * its place: the bridge draws the spans Claude Code's own trace draws, and events that report
 * work of their own with a duration; every other event is folded onto the row it belongs to.
 *
 * | event                     | draws                                                  | parent / onto     |
 * |---------------------------|--------------------------------------------------------|-------------------|
 * | `user_prompt`             | the interaction root's attributes (its text as          | (it is the root)  |
 * |                           | gen_ai.prompt) and the start of its turn               |                   |
 * | `api_request`             | `claude_code.llm_request` (CLIENT), model, tokens      | its agent         |
 * |                           | (input = input + cache read + cache write), cost; its  |                   |
 * |                           | input (what the model got since its chain's previous   |                   |
 * |                           | call) as gen_ai.input.messages and gen_ai.prompt,      |                   |
 * |                           | from the events (inputs.ts)                            |                   |
 * | `api_error`               | `claude_code.llm_request` (CLIENT), status ERROR       | its agent         |
 * |                           | (see turnEndOf for when it also ends the turn)         |                   |
 * | `tool_decision`           | `claude_code.tool.blocked_on_user`; a refused tool's   | its tool span     |
 * |                           | `claude_code.tool` span too, status ERROR (as is the   |                   |
 * |                           | main agent's accepted one's, held with the root, drawn |                   |
 * |                           | only if no tool_result comes: unfinishedToolSpan)      |                   |
 * | `tool_result`             | `claude_code.tool` (its input as gen_ai.prompt) and    | its agent / tool  |
 * |                           | its `claude_code.tool.execution`                       |                   |
 * | `hook_execution_complete` | `claude_code.hook`: event, name, duration, outcome     | its agent         |
 * | `hook_execution_start`    | nothing: its `_complete` draws the hook whole          | -                 |
 * | any other event with      | a span `claude_code.<name>` (compaction, an MCP        | its agent         |
 * | `duration_ms`             | server's connection, ...)                              |                   |
 * | folded, no row:           |                                                        |                   |
 * | `assistant_response`      | its text as gen_ai.completion and                      | onto its LLM span |
 * |                           | gen_ai.output.messages; the root's output; the main    |                   |
 * |                           | agent's ends the turn (turnEndOf)                      |                   |
 * | `subagent_completed`      | the subagent's totals                                  | onto its Agent    |
 * |                           | (they meet the main agent's Agent call spans in        | call's tool span  |
 * |                           | lua/held.lua, H.meet: a background call's span         |                   |
 * |                           | waits for them)                                        |                   |
 * | `api_retries_exhausted`   | its fields                                             | onto its request  |
 * | `api_refusal`             | its fields                                             | onto its request  |
 * | any other event (start-up | one line each, in order, in the root's                 | onto the root     |
 * | and housekeeping, a       | `claude_code.interaction.events`; a start-up summary   |                   |
 * | permission-mode change, a | (`claude_code.startup.*`), permission modes, skills    |                   |
 * | skill, ...)               |                                                        |                   |
 *
 * "Its agent" is the interaction root for the main agent (agents.ts places subagents' spans).
 * A folded event's own fields go onto its row as `claude_code.<event>.<field>` (folds.ts): nothing
 * it said is dropped. Where its row was sent already (LLMFlow keeps a span's first copy), it is
 * an instant span of its own (`span.type: event`), as every such event is with BRIDGE_EVENT_ROWS=each.
 * An LLM span whose answer, or input, may still come waits with its turn's root (interaction.ts,
 * inputs.ts). What went wrong (`problem`) goes into the root's problems list (problems.ts).
 *
 * A span ends at its event's time and starts `duration_ms` before it (Claude Code logs an event
 * when its work ends). Names and parents are those of Claude Code's own (beta) trace; LLM spans are
 * kind CLIENT, as the GenAI conventions ask for a call to a model service (Claude Code's own are all
 * INTERNAL). Every span keeps the event's own fields as attributes, long text once (moved to the name
 * LLMFlow shows, not copied), and adds the GenAI names (and the older names LLMFlow reads) from the
 * tables below. `traceloop.span.kind` types each span for LLMFlow, which otherwise guesses from the
 * name ("tool" in `claude_code.tool.execution` would count it as a second tool call).
 */
import { SpanKind, StatusCode, type AttributeValue } from '@ccbridge/otlp';
import { NS_PER_MS, booleanOf, msOf, numberOf, stringOf, type Attributes, type ClaudeEvent } from './events';
import { spanIdFor } from './ids';
import { requestMessages, responseMessages, textMessages } from './messages';

export interface SpanDraft {
  spanId: string;
  /** Undefined for a child of the interaction root. */
  parentSpanId?: string;
  name: string;
  kind: number;
  startNs: bigint;
  endNs: bigint;
  attributes: Attributes;
  status?: { code: number; message?: string };
  /** The event is no row of its own: the fold goes onto its span (folds.ts), the draft is drawn only where it cannot. */
  fold?: Fold;
}

export interface Fold {
  /** A span id, ROOT or AGENT_CALL. */
  into: string;
  attributes: Attributes;
  /** Another id the span it folds into goes by, for folds that name it so (a request body's id). */
  alias?: string;
}
/** A fold onto the interaction's root, into its ordered list of events (and its start-up summary). */
export const ROOT = 'root';
/** A fold onto the tool span of the Agent call that started the event's subagent (known once it is placed). */
export const AGENT_CALL = 'agent_call';

/**
 * The interaction's totals, by the name each has on its root: Claude Code's own names, not
 * gen_ai.usage.*, so that tools summing tokens over spans (LLMFlow does) do not count each LLM
 * call twice.
 */
export const TOTALS = {
  llmRequests: 'claude_code.interaction.llm_requests',
  toolCalls: 'claude_code.interaction.tool_calls',
  errors: 'claude_code.interaction.errors',
  inputTokens: 'claude_code.interaction.input_tokens',
  outputTokens: 'claude_code.interaction.output_tokens',
  cacheReadTokens: 'claude_code.interaction.cache_read_tokens',
  cacheCreationTokens: 'claude_code.interaction.cache_creation_tokens',
  costUsd: 'claude_code.interaction.cost_usd',
} as const;
/** What one event adds to its interaction's totals (summed when the root closes), and what went wrong (problems.ts). */
export type Contribution = { [T in keyof typeof TOTALS]?: number } & { problem?: Problem };

export interface EventOutcome {
  spans: SpanDraft[];
  contribution?: Contribution;
  /** user_prompt: the attributes of the interaction root. */
  prompt?: Attributes;
  /** assistant_response: the interaction's output text. */
  completion?: string;
}

/**
 * Whether an event may end its turn, and how: the lifecycle's end markers (lua/lifecycle.lua;
 * docs/CLAUDE_CODE_EVENTS.md has the evidence). The main agent's `assistant_response` ends it
 * unless its request called a tool (lifecycle.lua tells by the tools' `request_id`); an
 * `api_error`, logged once a request failed for good, ends it when the request was the main
 * thread's. Side requests (titles, compaction, ...) and subagents (`agent_id`) end nothing.
 */
export function turnEndOf(e: ClaudeEvent): 'response' | 'error' | undefined {
  if (e.attributes['agent_id'] !== undefined) return undefined;
  if (e.name === 'assistant_response') return 'response';
  return e.name === 'api_error' && isMainThread(e.attributes) ? 'error' : undefined;
}
const MAIN_THREAD_SOURCES = new Set(['sdk', 'repl_main_thread']);
/** A request of the main thread, not a side request (a title, a compaction, ...): by its query_source, if it has one. */
export function isMainThread(a: Attributes): boolean {
  const source = stringOf(a['query_source']);
  return source === undefined || MAIN_THREAD_SOURCES.has(source);
}

/** [event field, span attribute, type]: GenAI names for Claude Code's fields. */
type Rename = readonly [from: string, to: string, type: 'string' | 'number'];
/** What every table ends with (renamed adds it): a span's session is its GenAI conversation. */
const CONVERSATION: Rename = ['session.id', 'gen_ai.conversation.id', 'string'];

const LLM_REQUEST_ATTRIBUTES: readonly Rename[] = [
  ['model', 'gen_ai.request.model', 'string'],
  ['model', 'gen_ai.response.model', 'string'],
  ['output_tokens', 'gen_ai.usage.output_tokens', 'number'],
  ['output_tokens', 'gen_ai.usage.completion_tokens', 'number'], // the name LLMFlow reads
  ['cache_read_tokens', 'gen_ai.usage.cache_read.input_tokens', 'number'],
  ['cache_creation_tokens', 'gen_ai.usage.cache_creation.input_tokens', 'number'],
  ['request_id', 'gen_ai.response.id', 'string'],
  ['cost_usd', 'gen_ai.usage.cost', 'number'],
];

/**
 * Every input token the call processed: Anthropic's `input_tokens` leaves out the cache, which
 * the GenAI conventions count in `gen_ai.usage.input_tokens` ("SHOULD include all types of
 * input tokens, including cached tokens"); its parts stay in the cache_read / cache_creation
 * attributes. Undefined when the event reports no input count at all.
 */
function inputTokensOf(a: Attributes): number | undefined {
  const parts = ['input_tokens', 'cache_read_tokens', 'cache_creation_tokens'].map((k) => numberOf(a[k]));
  if (parts.every((n) => n === undefined)) return undefined;
  return parts.reduce<number>((sum, n) => sum + (n ?? 0), 0);
}

/** An LLM request's GenAI attributes: the renamed fields and the whole input count (also as LLMFlow's prompt_tokens). */
export function llmRequestAttributes(a: Attributes): Attributes {
  const out = renamed(a, LLM_REQUEST_ATTRIBUTES);
  const input = inputTokensOf(a);
  if (input !== undefined) {
    out['gen_ai.usage.input_tokens'] = input;
    out['gen_ai.usage.prompt_tokens'] = input; // the name LLMFlow reads
  }
  return out;
}

const LLM_ERROR_ATTRIBUTES: readonly Rename[] = [
  ['model', 'gen_ai.request.model', 'string'],
  ['status_code', 'http.response.status_code', 'number'],
  ['error', 'error.type', 'string'],
];

const TOOL_ATTRIBUTES: readonly Rename[] = [
  ['tool_name', 'gen_ai.tool.name', 'string'],
  ['tool_use_id', 'gen_ai.tool.call.id', 'string'],
];

const LLM_SPAN = {
  'gen_ai.system': 'anthropic',
  'gen_ai.provider.name': 'anthropic',
  'gen_ai.operation.name': 'chat',
};
export const TOOL_SPAN = { 'gen_ai.operation.name': 'execute_tool', 'traceloop.span.kind': 'tool' };
/** Spans that are part of a larger step (a tool's execution, its permission wait, a hook): LLMFlow's "chain". */
const STEP_SPAN = { 'traceloop.span.kind': 'task' };
/** Spans drawn for events that report no work; Claude Code's own trace has no such spans. */
const EVENT_SPAN = { ...STEP_SPAN, 'span.type': 'event' };

function renamed(attributes: Attributes, table: readonly Rename[]): Attributes {
  const out: Attributes = {};
  for (const [from, to, type] of [...table, CONVERSATION]) {
    const value = type === 'number' ? numberOf(attributes[from]) : stringOf(attributes[from]);
    if (value !== undefined) out[to] = value;
  }
  return out;
}

/** The attributes with the text at `from` moved to `to` (not copied: long text goes once per span). */
function moved(attributes: Attributes, from: readonly string[], to: string): Attributes {
  const key = from.find((k) => stringOf(attributes[k]) !== undefined);
  if (!key) return attributes;
  const { [key]: text, ...rest } = attributes;
  return { ...rest, [to]: text! };
}

/** Identity fields a helper span keeps of its event (the span it belongs to has the rest). */
const IDENTITY = [
  'session.id',
  'prompt.id',
  'event.name',
  'event.sequence',
  'tool_name',
  'tool_use_id',
  'success',
  'error',
  'duration_ms',
  'agent_id',
  'parent_agent_id',
];
const pick = (attributes: Attributes, keys: readonly string[]): Attributes =>
  Object.fromEntries(keys.filter((k) => attributes[k] !== undefined).map((k) => [k, attributes[k]!]));

/** The work an event reports: it ends at the event and lasts `duration_ms` (or `field`). */
function extent(event: ClaudeEvent, field = 'duration_ms'): { startNs: bigint; endNs: bigint } {
  const ms = numberOf(event.attributes[field]);
  // A duration that is not a finite positive number, or would start the work before 1970 (a
  // value no clock gives: 1e308 from a fuzzer), is not used: the span is an instant.
  const us = ms !== undefined && ms > 0 ? Math.round(ms * 1000) : 0;
  const duration = Number.isSafeInteger(us) ? BigInt(us) * (NS_PER_MS / 1000n) : 0n;
  const startNs = duration <= event.timeNs ? event.timeNs - duration : event.timeNs;
  return { startNs, endNs: event.timeNs };
}

const str = (v: AttributeValue | undefined) => stringOf(v) ?? '';

/**
 * What identifies an event when it has no id of its own: its session, place and time; without
 * a place (older Claude Code numbers nothing), its content too, since two events of a name can
 * share a millisecond (plugins loaded at start-up do).
 */
const eventIdentity = (e: ClaudeEvent): string => {
  const seq = str(e.attributes['event.sequence']);
  const identity = [e.name, str(e.attributes['session.id']), seq, String(e.timeNs)].join('/');
  return seq ? identity : `${identity}/${JSON.stringify(e.attributes)}`;
};

/** A span of the event's own: INTERNAL, named after it, an instant at its time, unless `draft` says otherwise. */
function draftOf(e: ClaudeEvent, attributes: Attributes, draft: Partial<SpanDraft> = {}): SpanDraft {
  return {
    name: `claude_code.${e.name}`,
    kind: SpanKind.INTERNAL,
    startNs: e.timeNs,
    endNs: e.timeNs,
    attributes,
    ...draft,
    spanId: draft.spanId ?? spanIdFor(e.name, eventIdentity(e)),
  };
}

/** A tool call's `claude_code.tool` span: a subagent's totals fold into its Agent call's (agents.ts). */
export const toolSpanIdFor = (session: string, toolUseId: string) => spanIdFor('tool', session, toolUseId);
const toolSpanId = (e: ClaudeEvent) =>
  toolSpanIdFor(str(e.attributes['session.id']), str(e.attributes['tool_use_id']) || eventIdentity(e));
const executionSpanIdOf = (toolSpanId: string) => spanIdFor('tool.execution', toolSpanId);
/** A tool call's `claude_code.tool.execution`: where the subagent an Agent call started goes (agents.ts). */
export const toolExecutionSpanIdFor = (session: string, toolUseId: string) =>
  executionSpanIdOf(toolSpanIdFor(session, toolUseId));
/** The span of an LLM request, from its request_id: answers and tools name the request they belong to. */
export const llmSpanIdFor = (session: string, requestId: string) => spanIdFor('api_request', session, requestId);
/** The LLM span of the request an event names, if it names one. */
const requestSpanIdOf = (e: ClaudeEvent): string | undefined => {
  const requestId = stringOf(e.attributes['request_id']);
  return requestId ? llmSpanIdFor(str(e.attributes['session.id']), requestId) : undefined;
};

/** A tool's input is what LLMFlow shows in its input panel (gen_ai.prompt). */
const TOOL_INPUT = ['tool_input', 'tool_parameters'];

function toolSpan(e: ClaudeEvent, startNs: bigint, status: SpanDraft['status']): SpanDraft {
  const attributes = {
    ...moved(e.attributes, TOOL_INPUT, 'gen_ai.prompt'),
    ...TOOL_SPAN,
    ...renamed(e.attributes, TOOL_ATTRIBUTES),
  };
  return draftOf(e, attributes, { spanId: toolSpanId(e), name: 'claude_code.tool', startNs, status });
}

/**
 * The tool span of an accepted call whose tool_result has not come: held with its turn's root and
 * drawn with it only if none comes (its process was killed while the tool ran), so that its
 * blocked_on_user span keeps its parent. A tool_result's span takes its place (same id).
 */
export function unfinishedToolSpan(e: ClaudeEvent): SpanDraft | undefined {
  if (e.name !== 'tool_decision' || !['', 'accept'].includes(str(e.attributes['decision']))) return undefined;
  const span = toolSpan(e, e.timeNs, { code: StatusCode.ERROR, message: 'no tool_result came for this tool call' });
  span.attributes['claude_code.tool.unfinished'] = true;
  return span;
}

/** The tool span a tool_result draws (its id), if it is one. */
export const toolSpanIdOfResult = (e: ClaudeEvent): string | undefined =>
  e.name === 'tool_result' ? toolSpanId(e) : undefined;

/** What a hook invocation came to, from its counts: `blocked`, `error`, `cancelled` or `success`. */
function hookOutcome(a: Attributes): string {
  const n = (k: string) => numberOf(a[k]) ?? 0;
  if (n('num_blocking') > 0) return 'blocked';
  if (n('num_non_blocking_error') > 0) return 'error';
  if (n('num_cancelled') > 0) return 'cancelled';
  return 'success';
}

/** Fields every event of a turn carries alike, and its name: what a fold does not repeat (SHARED; folds.ts ROOT_SHARED). */
export const COMMON_FIELDS = [
  'session.id',
  'prompt.id',
  'event.name',
  'user.id',
  'user.email',
  'user.account_uuid',
  'user.account_id',
  'organization.id',
  'terminal.type',
  'anthropic.provider',
  'anthropic.custom_base_url',
] as const;

/** Fields a folded event shares with the span it folds into: its others go onto it as `claude_code.<event>.<field>`. */
const SHARED = new Set<string>([
  ...COMMON_FIELDS,
  'agent_id',
  'parent_agent_id',
  'request_id',
  'model',
  'query_source',
]);
function prefixed(e: ClaudeEvent, skip: readonly string[] = []): Attributes {
  const out: Attributes = {};
  for (const [k, v] of Object.entries(e.attributes))
    if (!SHARED.has(k) && !skip.includes(k)) out[`claude_code.${e.name}.${k}`] = v;
  return out;
}

/** An instant span of the event's own, with every field: what a folded event is drawn as where it cannot fold. */
const eventSpan = (e: ClaudeEvent, fold?: Fold): SpanDraft =>
  draftOf(e, Object.assign({}, e.attributes, EVENT_SPAN), fold && { fold });

/** The LLM span a request body belongs to, by the body's id, if it has one (its reply says which span that is). */
const requestBodySpanIdOf = (e: ClaudeEvent): string | undefined => {
  const bodyId = stringOf(e.attributes['request_body_id']);
  return bodyId ? spanIdFor('request_body', str(e.attributes['session.id']), bodyId) : undefined;
};

/** A raw body as JSON; undefined when it is not (cut by Claude Code: CLAUDE_CODE_OTEL_CONTENT_MAX_LENGTH), so it stays text. */
function parsedBody(e: ClaudeEvent): Record<string, unknown> | undefined {
  try {
    const body = JSON.parse(str(e.attributes['body'])) as unknown;
    return body && typeof body === 'object' && !Array.isArray(body) ? (body as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

/** A folded raw body: its messages (when it is JSON) and its other fields, onto `into`. */
function bodyFold(e: ClaudeEvent, into: string, messages: (body: Record<string, unknown>) => Attributes): Fold {
  const body = parsedBody(e);
  return { into, attributes: { ...(body && messages(body)), ...prefixed(e, body ? ['body'] : []) } };
}

/** A failed API call's span, addressable by its place: `api_retries_exhausted` comes at the next event.sequence. */
const apiErrorSpanIdFor = (e: ClaudeEvent, seq: number) =>
  spanIdFor('api_error', str(e.attributes['session.id']), str(e.attributes['prompt.id']), String(seq));

/** A `claude_code.llm_request` span (kind CLIENT), with the event's own id unless `spanId` names another. */
function llmSpan(e: ClaudeEvent, attributes: Attributes, status: SpanDraft['status'], spanId?: string): SpanDraft {
  const draft = { ...extent(e), spanId, name: 'claude_code.llm_request', kind: SpanKind.CLIENT, status };
  return draftOf(e, Object.assign({}, e.attributes, LLM_SPAN, attributes), draft);
}

const EVENT_MAPPERS: Record<string, (event: ClaudeEvent) => EventOutcome> = {
  user_prompt: (e) => ({ spans: [], prompt: e.attributes }),

  api_request: (e) => {
    const a = e.attributes;
    const spanId = a['request_id'] ? llmSpanIdFor(str(a['session.id']), str(a['request_id'])) : undefined;
    return {
      spans: [llmSpan(e, llmRequestAttributes(a), { code: StatusCode.OK }, spanId)],
      contribution: {
        llmRequests: 1,
        inputTokens: inputTokensOf(a),
        outputTokens: numberOf(a['output_tokens']),
        cacheReadTokens: numberOf(a['cache_read_tokens']),
        cacheCreationTokens: numberOf(a['cache_creation_tokens']),
        costUsd: numberOf(a['cost_usd']),
      },
    };
  },

  api_error: (e) => {
    const seq = numberOf(e.attributes['event.sequence']);
    const spanId = seq !== undefined ? apiErrorSpanIdFor(e, seq) : undefined;
    const error = stringOf(e.attributes['error']) ?? 'API error';
    const status = { code: StatusCode.ERROR, message: error };
    return {
      spans: [llmSpan(e, renamed(e.attributes, LLM_ERROR_ATTRIBUTES), status, spanId)],
      contribution: {
        llmRequests: 1,
        errors: 1,
        problem: problemOf(e, [str(e.attributes['status_code']), error].filter(Boolean).join(' ')),
      },
    };
  },

  tool_decision: (e) => {
    const decision = str(e.attributes['decision']);
    // The tool span shows the input; the decision keeps what was decided.
    const kept = pick(e.attributes, [...IDENTITY, 'decision', 'source', 'permission_mode', 'request_id']);
    const attributes = { ...kept, ...STEP_SPAN, ...renamed(e.attributes, TOOL_ATTRIBUTES) };
    const spans = [draftOf(e, attributes, { parentSpanId: toolSpanId(e), name: 'claude_code.tool.blocked_on_user' })];
    if (['', 'accept'].includes(decision)) return { spans };
    // A refused tool never runs, so no tool_result will draw its span: draw it here.
    spans.push(toolSpan(e, e.timeNs, { code: StatusCode.ERROR, message: `tool use refused (${decision})` }));
    return { spans, contribution: toolFailure(e, `refused (${decision})`) };
  },

  tool_result: (e) => {
    const { startNs, endNs } = extent(e);
    const failed = booleanOf(e.attributes['success']) === false;
    const error = stringOf(e.attributes['error']);
    const status = failed ? { code: StatusCode.ERROR, message: error ?? 'tool failed' } : { code: StatusCode.OK };
    const tool = toolSpan(e, startNs, status);
    const attributes = { ...pick(e.attributes, IDENTITY), ...STEP_SPAN, ...renamed(e.attributes, TOOL_ATTRIBUTES) };
    const execution = { spanId: executionSpanIdOf(tool.spanId), parentSpanId: tool.spanId, startNs, endNs, status };
    return {
      spans: [tool, draftOf(e, attributes, { ...execution, name: 'claude_code.tool.execution' })],
      contribution: failed ? toolFailure(e, `failed: ${error ?? 'error'}`) : { toolCalls: 1, errors: 0 },
    };
  },

  hook_execution_start: () => ({ spans: [] }),

  hook_execution_complete: (e) => {
    const { startNs, endNs } = extent(e, 'total_duration_ms');
    const errors = numberOf(e.attributes['num_non_blocking_error']) ?? 0;
    // duration_ms as Claude Code's own hook span names it.
    const attributes = {
      ...e.attributes,
      ...STEP_SPAN,
      'span.type': 'hook',
      'claude_code.hook.outcome': hookOutcome(e.attributes),
      duration_ms: Number((endNs - startNs) / NS_PER_MS),
    };
    const hook = { spanId: spanIdFor('hook', eventIdentity(e)), name: 'claude_code.hook', startNs, endNs };
    if (errors <= 0) return { spans: [draftOf(e, attributes, hook)] };
    const status = { code: StatusCode.ERROR, message: `${errors} hook(s) failed` };
    return {
      spans: [draftOf(e, attributes, { ...hook, status })],
      contribution: { errors: 1, problem: problemOf(e, `hook ${str(e.attributes['hook_name'])} failed (${errors})`) },
    };
  },

  subagent_completed: (e) => ({ spans: [eventSpan(e, { into: AGENT_CALL, attributes: prefixed(e) })] }),

  assistant_response: (e) => {
    const a = e.attributes;
    const text = stringOf(a['response']) ?? '';
    const request = requestSpanIdOf(e);
    const response = {
      ...eventSpan(e),
      parentSpanId: request,
      attributes: { ...moved(a, ['response'], 'gen_ai.completion'), ...EVENT_SPAN },
    };
    // Without event.sequence (older Claude Code) nothing tells whether an answer is still to
    // come, so its request is never held for it: the answer stays a span of its own.
    if (numberOf(a['event.sequence']) === undefined) return { spans: [response], completion: text };
    const answer = {
      'gen_ai.completion': text,
      'gen_ai.output.messages': textMessages('assistant', text),
      ...prefixed(e, ['response']),
    };
    return { spans: [{ ...response, fold: { into: request ?? ROOT, attributes: answer } }], completion: text };
  },

  api_retries_exhausted: (e) => {
    const seq = numberOf(e.attributes['event.sequence']);
    const into = seq !== undefined && seq > 0 ? apiErrorSpanIdFor(e, seq - 1) : ROOT;
    return {
      spans: [eventSpan(e, { into, attributes: prefixed(e) })],
      contribution: {
        problem: problemOf(e, `retries exhausted after ${str(e.attributes['total_attempts']) || '?'} attempts`),
      },
    };
  },
  // Raw API bodies (OTEL_LOG_RAW_API_BODIES): the conversation a call was sent and its reply, on
  // its LLM span. The reply names the request (request_id) and the body it answered
  // (request_body_id), which is all the request body names: the reply joins the two.
  api_request_body: (e) => ({ spans: [eventSpan(e, bodyFold(e, requestBodySpanIdOf(e) ?? ROOT, requestMessages))] }),
  api_response_body: (e) => {
    const alias = requestBodySpanIdOf(e);
    const fold = bodyFold(e, requestSpanIdOf(e) ?? ROOT, responseMessages);
    return { spans: [eventSpan(e, { ...fold, ...(alias && { alias }) })] };
  },
  api_refusal: (e) => ({
    spans: [eventSpan(e, { into: requestSpanIdOf(e) ?? ROOT, attributes: prefixed(e) })],
    contribution: { problem: problemOf(e, 'the model refused') },
  }),
};

/** The outcome of any event, known or not (the table's last rows for the events EVENT_MAPPERS does not name). */
export function mapEvent(event: ClaudeEvent): EventOutcome {
  const mapper = EVENT_MAPPERS[event.name];
  if (mapper) return mapper(event);
  const { startNs, endNs } = extent(event);
  const failed = booleanOf(event.attributes['success']) === false;
  const error = stringOf(event.attributes['error']);
  const contribution: Contribution | undefined = failed
    ? { errors: 1, problem: problemOf(event, error ?? 'failed') }
    : event.name === 'compaction'
      ? { problem: problemOf(event, `compacted (${str(event.attributes['trigger']) || 'auto'})`) }
      : undefined;
  if (startNs === endNs) return { spans: [eventSpan(event, { into: ROOT, attributes: {} })], contribution };
  const status = failed ? { code: StatusCode.ERROR, message: error ?? event.name } : undefined;
  return { spans: [draftOf(event, { ...event.attributes, ...STEP_SPAN }, { startNs, endNs, status })], contribution };
}

/** What went wrong in an event, for its turn's root: in order, the same tool call failing again told as such (problems.ts). */
export interface Problem {
  /** event.sequence, or the time in ms when there is none: the list's order. */
  order: number;
  text: string;
  /** Tool name and input: failures with equal keys are the same call failing again. */
  repeat?: string;
}

function problemOf(e: ClaudeEvent, what: string, repeat?: string): Problem {
  const who =
    e.attributes['agent_id'] !== undefined
      ? ` (subagent ${str(e.attributes['agent_type']) || str(e.attributes['agent_id'])})`
      : '';
  return {
    order: numberOf(e.attributes['event.sequence']) ?? msOf(e),
    text: `${e.name}${who}: ${what}`,
    ...(repeat !== undefined && { repeat }),
  };
}

/** A failed tool call's contribution; its identity (tool name and input) tells repeats. */
function toolFailure(e: ClaudeEvent, what: string): Contribution {
  const tool = str(e.attributes['tool_name']);
  const input = str(e.attributes['tool_input']) || str(e.attributes['tool_parameters']);
  return { toolCalls: 1, errors: 1, problem: problemOf(e, `${tool} ${what}`, `${tool} ${input}`) };
}
