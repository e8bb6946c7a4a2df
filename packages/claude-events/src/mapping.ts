/**
 * Where a Claude Code event becomes a span: the whole mapping, one entry per event.
 *
 * | event                | draws                                                    | parent          |
 * |----------------------|----------------------------------------------------------|-----------------|
 * | `user_prompt`        | the interaction root's attributes (prompt → gen_ai.prompt) | (it is the root) |
 * |                      | and the start of its turn                                |                 |
 * | `api_request`        | `claude_code.llm_request` (CLIENT), model and tokens     | root            |
 * | `api_error`          | `claude_code.llm_request` (CLIENT), status ERROR         | root            |
 * |                      | (see turnEndOf for when it also ends the turn)            |                 |
 * | `tool_decision`      | `claude_code.tool.blocked_on_user`; a refused tool also   | its tool span   |
 * |                      | draws its `claude_code.tool` span, status ERROR          |                 |
 * | `tool_result`        | `claude_code.tool` and its `claude_code.tool.execution`   | root / tool     |
 * | `assistant_response` | the root's output (gen_ai.completion); the main agent's   | -               |
 * |                      | ends the turn (turnEndOf)                                 |                 |
 * | any other event      | with `duration_ms`: a span `claude_code.<name>`          | root            |
 * |                      | without: a span event on the interaction root            | -               |
 *
 * A span ends at its event's time and starts `duration_ms` before it (Claude Code logs an
 * event when its work ends). Names and parents are those of Claude Code's own (beta) trace;
 * LLM spans are kind CLIENT, as the GenAI conventions ask for a call to a model service
 * (Claude Code's own spans are all INTERNAL). Every span keeps all of the event's own fields as attributes and
 * adds the GenAI names (and the older names LLMFlow reads) from the tables below.
 */
import { SpanKind, StatusCode, type AttributeValue } from '@ccbridge/otlp';
import { NS_PER_MS, booleanOf, numberOf, stringOf, type Attributes, type ClaudeEvent } from './events';
import { spanIdFor } from './ids';

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
}

/** What one event adds to its interaction's totals; summed when the root closes. */
export interface Contribution {
  llmRequests?: number;
  toolCalls?: number;
  errors?: number;
  inputTokens?: number;
  outputTokens?: number;
  cacheReadTokens?: number;
  cacheCreationTokens?: number;
  costUsd?: number;
}

export interface EventOutcome {
  spans: SpanDraft[];
  contribution?: Contribution;
  /** user_prompt: the attributes of the interaction root. */
  prompt?: Attributes;
  /** assistant_response: the interaction's output text. */
  completion?: string;
  /** Neither span nor root field: recorded as a span event on the root. */
  rootEvent?: boolean;
}

/**
 * Whether an event may end its turn, and how: the lifecycle's end markers (lua/lifecycle.lua).
 *
 * Read from Claude Code 2.1.328 (docs/CLAUDE_CODE_EVENTS.md has the evidence): the main agent
 * logs an `assistant_response` after every answer that has text, and the turn is over at the
 * first one whose request called no tool (lifecycle.lua tells which: a tool's `tool_decision`
 * and `tool_result` carry the `request_id` of the answer that called it). A request that fails for good (after
 * its retries) logs one `api_error` (and `api_retries_exhausted` when it was retried), and the
 * turn stops there when that request was the main thread's (`query_source` `sdk` in print mode,
 * `repl_main_thread` in the terminal); side requests (titles, compaction, ...) and subagents
 * (`agent_id`) end nothing.
 */
export function turnEndOf(e: ClaudeEvent): 'response' | 'error' | undefined {
  if (e.attributes['agent_id'] !== undefined) return undefined;
  if (e.name === 'assistant_response') return 'response';
  if (e.name === 'api_error') {
    const source = stringOf(e.attributes['query_source']);
    return source === undefined || MAIN_THREAD_SOURCES.has(source) ? 'error' : undefined;
  }
  return undefined;
}
const MAIN_THREAD_SOURCES = new Set(['sdk', 'repl_main_thread']);

/** [event field, span attribute, type]: GenAI names for Claude Code's fields. */
type Rename = readonly [from: string, to: string, type: 'string' | 'number'];

export const LLM_REQUEST_ATTRIBUTES: readonly Rename[] = [
  ['model', 'gen_ai.request.model', 'string'],
  ['model', 'gen_ai.response.model', 'string'],
  ['input_tokens', 'gen_ai.usage.input_tokens', 'number'],
  ['input_tokens', 'gen_ai.usage.prompt_tokens', 'number'], // the name LLMFlow reads
  ['output_tokens', 'gen_ai.usage.output_tokens', 'number'],
  ['output_tokens', 'gen_ai.usage.completion_tokens', 'number'], // the name LLMFlow reads
  ['cache_read_tokens', 'gen_ai.usage.cache_read.input_tokens', 'number'],
  ['cache_creation_tokens', 'gen_ai.usage.cache_creation.input_tokens', 'number'],
  ['request_id', 'gen_ai.response.id', 'string'],
  ['cost_usd', 'gen_ai.usage.cost', 'number'],
  ['session.id', 'gen_ai.conversation.id', 'string'],
];

const LLM_ERROR_ATTRIBUTES: readonly Rename[] = [
  ['model', 'gen_ai.request.model', 'string'],
  ['status_code', 'http.response.status_code', 'number'],
  ['error', 'error.type', 'string'],
  ['session.id', 'gen_ai.conversation.id', 'string'],
];

const TOOL_ATTRIBUTES: readonly Rename[] = [
  ['tool_name', 'gen_ai.tool.name', 'string'],
  ['tool_use_id', 'gen_ai.tool.call.id', 'string'],
  ['session.id', 'gen_ai.conversation.id', 'string'],
];

/** Fixed attributes by span type; `traceloop.span.kind` is what LLMFlow reads for the type. */
export const LLM_SPAN = { 'gen_ai.system': 'anthropic', 'gen_ai.provider.name': 'anthropic', 'gen_ai.operation.name': 'chat' };
export const TOOL_SPAN = { 'gen_ai.operation.name': 'execute_tool', 'traceloop.span.kind': 'tool' };

export function renamed(attributes: Attributes, table: readonly Rename[]): Attributes {
  const out: Attributes = {};
  for (const [from, to, type] of table) {
    const value = type === 'number' ? numberOf(attributes[from]) : stringOf(attributes[from]);
    if (value !== undefined) out[to] = value;
  }
  return out;
}

/** [start, end] of the work an event reports: it ends at the event and lasts duration_ms. */
function extent(event: ClaudeEvent): [bigint, bigint] {
  const ms = numberOf(event.attributes['duration_ms']);
  const duration = ms !== undefined && ms > 0 ? BigInt(Math.round(ms * 1000)) * (NS_PER_MS / 1000n) : 0n;
  return [event.timeNs - duration, event.timeNs];
}

const str = (v: AttributeValue | undefined) => stringOf(v) ?? '';

/** What identifies an event when it has no id of its own: its session, place and time. */
export const eventIdentity = (e: ClaudeEvent): string =>
  [e.name, str(e.attributes['session.id']), str(e.attributes['event.sequence']), String(e.timeNs)].join('/');

const toolSpanId = (e: ClaudeEvent) => spanIdFor('tool', str(e.attributes['session.id']), str(e.attributes['tool_use_id']) || eventIdentity(e));

function toolSpan(e: ClaudeEvent, startNs: bigint, status: SpanDraft['status']): SpanDraft {
  return {
    spanId: toolSpanId(e),
    name: 'claude_code.tool',
    kind: SpanKind.INTERNAL,
    startNs,
    endNs: e.timeNs,
    attributes: { ...e.attributes, ...TOOL_SPAN, ...renamed(e.attributes, TOOL_ATTRIBUTES) },
    status,
  };
}

type Mapper = (event: ClaudeEvent) => EventOutcome;

export const EVENT_MAPPERS: Record<string, Mapper> = {
  user_prompt: (e) => ({ spans: [], prompt: e.attributes }),

  api_request: (e) => {
    const [startNs, endNs] = extent(e);
    const a = e.attributes;
    return {
      spans: [{
        spanId: spanIdFor(e.name, str(a['session.id']), str(a['request_id']) || eventIdentity(e)),
        name: 'claude_code.llm_request',
        kind: SpanKind.CLIENT,
        startNs,
        endNs,
        attributes: { ...a, ...LLM_SPAN, ...renamed(a, LLM_REQUEST_ATTRIBUTES) },
        status: { code: StatusCode.OK },
      }],
      contribution: {
        llmRequests: 1,
        inputTokens: numberOf(a['input_tokens']),
        outputTokens: numberOf(a['output_tokens']),
        cacheReadTokens: numberOf(a['cache_read_tokens']),
        cacheCreationTokens: numberOf(a['cache_creation_tokens']),
        costUsd: numberOf(a['cost_usd']),
      },
    };
  },

  api_error: (e) => {
    const [startNs, endNs] = extent(e);
    return {
      spans: [{
        spanId: spanIdFor(e.name, eventIdentity(e)),
        name: 'claude_code.llm_request',
        kind: SpanKind.CLIENT,
        startNs,
        endNs,
        attributes: { ...e.attributes, ...LLM_SPAN, ...renamed(e.attributes, LLM_ERROR_ATTRIBUTES) },
        status: { code: StatusCode.ERROR, message: stringOf(e.attributes['error']) ?? 'API error' },
      }],
      contribution: { llmRequests: 1, errors: 1 },
    };
  },

  tool_decision: (e) => {
    const decision = str(e.attributes['decision']);
    const refused = decision !== '' && decision !== 'accept';
    const spans: SpanDraft[] = [{
      spanId: spanIdFor(e.name, eventIdentity(e)),
      parentSpanId: toolSpanId(e),
      name: 'claude_code.tool.blocked_on_user',
      kind: SpanKind.INTERNAL,
      startNs: e.timeNs,
      endNs: e.timeNs,
      attributes: { ...e.attributes, ...renamed(e.attributes, TOOL_ATTRIBUTES) },
    }];
    // A refused tool never runs, so no tool_result will draw its span: draw it here.
    if (refused) {
      spans.push(toolSpan(e, e.timeNs, { code: StatusCode.ERROR, message: `tool use refused (${decision})` }));
    }
    return { spans, contribution: refused ? { toolCalls: 1, errors: 1 } : undefined };
  },

  tool_result: (e) => {
    const [startNs, endNs] = extent(e);
    const success = booleanOf(e.attributes['success']);
    const status = success === false
      ? { code: StatusCode.ERROR, message: stringOf(e.attributes['error']) ?? 'tool failed' }
      : { code: StatusCode.OK };
    const tool = toolSpan(e, startNs, status);
    return {
      spans: [tool, {
        spanId: spanIdFor('tool.execution', tool.spanId),
        parentSpanId: tool.spanId,
        name: 'claude_code.tool.execution',
        kind: SpanKind.INTERNAL,
        startNs,
        endNs,
        attributes: { ...e.attributes, ...renamed(e.attributes, TOOL_ATTRIBUTES) },
        status,
      }],
      contribution: { toolCalls: 1, errors: success === false ? 1 : 0 },
    };
  },

  assistant_response: (e) => ({ spans: [], completion: stringOf(e.attributes['response']) ?? '', rootEvent: true }),
};

/**
 * The outcome of any event, known or not. Any other event (hooks, compaction, subagents, MCP,
 * internal errors, events that do not exist yet) that reports work with a duration is a span
 * named after it; one without a duration is an event on the interaction's root span.
 */
export function mapEvent(event: ClaudeEvent): EventOutcome {
  const mapper = EVENT_MAPPERS[event.name];
  if (mapper) return mapper(event);
  const [startNs, endNs] = extent(event);
  if (startNs === endNs) return { spans: [], rootEvent: true };
  const success = booleanOf(event.attributes['success']);
  return {
    spans: [{
      spanId: spanIdFor(event.name, eventIdentity(event)),
      name: `claude_code.${event.name}`,
      kind: SpanKind.INTERNAL,
      startNs,
      endNs,
      attributes: { ...event.attributes },
      status: success === false ? { code: StatusCode.ERROR, message: stringOf(event.attributes['error']) ?? event.name } : undefined,
    }],
    contribution: success === false ? { errors: 1 } : undefined,
  };
}
