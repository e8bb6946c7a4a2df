/**
 * The turns a session has in LLMFlow, from the roots the worker sends: each root says whether it
 * holds all of its turn (`claude_code.interaction.complete`).
 */
import { attributesToRecord, type ResourceSpans } from '@ccbridge/otlp';

export interface DrawnTurn {
  session: string;
  traceId: string;
  /** Undefined when the root does not say (senders without event.sequence). */
  complete?: boolean;
}

const ROOT = 'claude_code.interaction';

export function drawnTurns(resourceSpans: ResourceSpans[]): DrawnTurn[] {
  const out: DrawnTurn[] = [];
  for (const rs of resourceSpans) {
    for (const ss of rs.scopeSpans ?? []) {
      for (const span of ss.spans ?? []) {
        if (span.name !== ROOT || span.parentSpanId) continue;
        const a = attributesToRecord(span.attributes);
        const session = a['gen_ai.conversation.id'] ?? a['session.id'];
        if (typeof session !== 'string' || session === '') continue;
        const complete = a['claude_code.interaction.complete'];
        out.push({ session, traceId: span.traceId, ...(typeof complete === 'boolean' && { complete }) });
      }
    }
  }
  return out;
}
