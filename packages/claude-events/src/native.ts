/**
 * Claude Code's own spans (its beta tracing), as they arrive at /v1/traces: forwarded by
 * @ccbridge/native-traces with the attribute names LLMFlow reads added, by the same tables that
 * name the event-derived spans (mapping.ts).
 */
import { nativeSpansToForward as forward, type Additions, type NativeTraceMode } from '@ccbridge/native-traces';
import type { ResourceSpans } from '@ccbridge/otlp';
import { TOOL_SPAN, llmRequestAttributes } from './mapping';
import type { Redactor } from '@ccbridge/privacy';

/** What each native span gains; existing attributes are never overwritten. */
const ADDED: Additions = {
  'claude_code.interaction': (a) => ({
    'traceloop.span.kind': 'agent',
    ...(typeof a['user_prompt'] === 'string' ? { 'gen_ai.prompt': a['user_prompt'] } : {}),
  }),
  'claude_code.llm_request': (a) => llmRequestAttributes(a),
  'claude_code.tool': () => ({ ...TOOL_SPAN }),
};

/** The spans to forward from a /v1/traces request: Claude Code's enriched, or left out in `events` mode. */
export const nativeSpansToForward = (request: ResourceSpans[], mode: NativeTraceMode, redactor: Redactor) =>
  forward(request, mode, redactor, ADDED);
