/**
 * Claude Code's own spans (its beta tracing, `CLAUDE_CODE_ENHANCED_TELEMETRY_BETA=1`), as they
 * arrive at /v1/traces: forwarded with the attributes the caller adds by span name (existing
 * attributes are never overwritten), or left out where the events draw them. Spans from other
 * tracers pass as they are; everything is redacted as the privacy policy says.
 */
import {
  attributesToRecord,
  recordToAttributes,
  type AttributeValue,
  type ResourceSpans,
  type ScopeSpans,
  type Span,
} from '@ccbridge/otlp';
import type { Redactor } from '@ccbridge/privacy';
import { SERVICE_NAME } from '@ccbridge/telemetry';

export type NativeTraceMode = 'prefer' | 'events' | 'both';

/** What each Claude Code span gains, by span name, from its own attributes. */
export type Additions = Record<string, (a: Record<string, AttributeValue>) => Record<string, AttributeValue>>;

const CLAUDE_SCOPE = 'com.anthropic.claude_code';
const isClaudeCodeScope = (ss: ScopeSpans) => ss.scope?.name?.startsWith(CLAUDE_SCOPE) ?? false;

/** A span with the privacy policy applied to its attributes and its events' attributes. */
function redacted(span: Span, redactor: Redactor): Span {
  if (!redactor.active) return span;
  return {
    ...span,
    attributes: redactor.keyValues(span.attributes),
    events: span.events?.map((e) => ({ ...e, attributes: redactor.keyValues(e.attributes) })),
  };
}

function enrich(span: Span, additions: Additions): Span {
  const attrs = attributesToRecord(span.attributes);
  const added = additions[span.name]?.(attrs) ?? {};
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
  additions: Additions,
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
      return [{ ...ss, spans: (ss.spans ?? []).map((s) => redacted(enrich(s, additions), redactor)) }];
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
