/**
 * Claude Code's own spans (its beta tracing, `CLAUDE_CODE_ENHANCED_TELEMETRY_BETA=1`), as they
 * arrive at /v1/traces: forwarded with the attribute names LLMFlow reads added, by the same
 * tables that name the event-derived spans (mapping.ts). Spans from other tracers pass as they are.
 */
import { attributesToRecord, recordToAttributes, type ResourceSpans, type ScopeSpans, type Span } from '@ccbridge/otlp';
import type { Attributes } from './events';
import { TOOL_SPAN, llmRequestAttributes } from './mapping';
import type { Redactor } from './privacy';
import { SERVICE_NAME } from '@ccbridge/telemetry';

export type NativeTraceMode = 'prefer' | 'events' | 'both';

const CLAUDE_SCOPE = 'com.anthropic.claude_code';
const isClaudeCodeScope = (ss: ScopeSpans) => ss.scope?.name?.startsWith(CLAUDE_SCOPE) ?? false;

/** What each native span gains; existing attributes are never overwritten. */
const ADDED: Record<string, (a: Attributes) => Attributes> = {
  'claude_code.interaction': (a) => ({
    'traceloop.span.kind': 'agent',
    ...(typeof a['user_prompt'] === 'string' ? { 'gen_ai.prompt': a['user_prompt'] } : {}),
  }),
  'claude_code.llm_request': (a) => llmRequestAttributes(a),
  'claude_code.tool': () => ({ ...TOOL_SPAN }),
};

/** A span with the privacy policy applied to its attributes and its events' attributes. */
function redacted(span: Span, redactor: Redactor): Span {
  if (!redactor.active) return span;
  return {
    ...span,
    attributes: redactor.keyValues(span.attributes),
    events: span.events?.map((e) => ({ ...e, attributes: redactor.keyValues(e.attributes) })),
  };
}

function enrich(span: Span): Span {
  const attrs = attributesToRecord(span.attributes);
  const added = ADDED[span.name]?.(attrs) ?? {};
  const missing = Object.fromEntries(Object.entries(added).filter(([k]) => !(k in attrs)));
  return { ...span, attributes: [...(span.attributes ?? []), ...recordToAttributes(missing)] };
}

const isBridgeOwn = (rs: ResourceSpans) =>
  (rs.resource?.attributes ?? []).some((kv) => kv.key === 'service.name' && kv.value?.stringValue === SERVICE_NAME);
/** The bridge's tracer is named SERVICE_NAME whatever OTEL_SERVICE_NAME calls the process. */
const isBridgeOwnScope = (ss: ScopeSpans) => ss.scope?.name === SERVICE_NAME;

/**
 * The spans to forward from a /v1/traces request: Claude Code's enriched (or, in `events`
 * mode, left out because the events draw them), everything redacted as the policy says.
 */
export function nativeSpansToForward(
  request: ResourceSpans[],
  mode: NativeTraceMode,
  redactor: Redactor,
): ResourceSpans[] {
  const out: ResourceSpans[] = [];
  for (const rs of request) {
    // The bridge's own traces, sent back to it (its OTLP export at a Collector that feeds it):
    // forwarding them would trace the forwarding, and so on without end.
    if (isBridgeOwn(rs)) continue;
    const scopeSpans = (rs.scopeSpans ?? []).flatMap((ss): ScopeSpans[] => {
      if (isBridgeOwnScope(ss)) return [];
      if (!isClaudeCodeScope(ss)) return [{ ...ss, spans: ss.spans?.map((s) => redacted(s, redactor)) }];
      if (mode === 'events') return [];
      return [{ ...ss, spans: (ss.spans ?? []).map((s) => redacted(enrich(s), redactor)) }];
    });
    if (scopeSpans.some((ss) => (ss.spans?.length ?? 0) > 0)) {
      out.push({
        ...rs,
        resource: rs.resource && { ...rs.resource, attributes: redactor.keyValues(rs.resource.attributes) },
        scopeSpans,
      });
    }
  }
  return out;
}
