/**
 * A Claude Code session's traces as LLMFlow stores them, and the comparison of those the bridge
 * drew from events with Claude Code's own (native) trace of the same scenario: the real-binary
 * tests (claude-code-power, claude-code-rows) share them.
 */
import assert from 'node:assert/strict';
import { attrs, waitFor, type LlmflowPeer, type StoredSpan } from './peers';

/** Spans drawn for events that report no work: Claude Code's own trace has none (mapping.ts). */
export const isEventSpan = (s: StoredSpan) => attrs(s)['span.type'] === 'event';

export interface SessionTraces {
  /** Each trace as "name <- parent name" lines, sorted (event spans left out); the traces sorted too. */
  shapes: string[][];
  /** Every span of the session's traces, event spans included. */
  spans: StoredSpan[];
  orphans: string[];
}

export async function sessionTraces(llmflow: LlmflowPeer, session: string): Promise<SessionTraces> {
  const all = await llmflow.spans();
  const traceIds = new Set(
    all
      .filter((s) => attrs(s)['session.id'] === session || attrs(s)['gen_ai.conversation.id'] === session)
      .map((s) => s.trace_id),
  );
  const spans = all.filter((s) => traceIds.has(s.trace_id));
  const byId = new Map(spans.map((s) => [s.id, s]));
  const orphans = spans.filter((s) => s.parent_id && !byId.has(s.parent_id)).map((s) => s.span_name);
  const shapes = [...traceIds].map((t) =>
    spans
      .filter((s) => s.trace_id === t && !isEventSpan(s))
      .map((s) => `${s.span_name} <- ${s.parent_id ? (byId.get(s.parent_id)?.span_name ?? 'MISSING') : '(root)'}`)
      .sort(),
  );
  return { shapes: shapes.sort((a, b) => a.join('\n').localeCompare(b.join('\n'))), spans, orphans };
}

/**
 * Waits until the session drawn from events has the native session's trees (both settled, no
 * orphans), then compares them; resolves with both sessions' traces as LLMFlow then holds them.
 */
export async function assertSameTrees(
  llmflow: LlmflowPeer,
  fromEvents: string,
  fromNative: string,
  traces: number,
  label: string,
): Promise<{ events: SessionTraces; native: SessionTraces }> {
  let last: { events: SessionTraces; native: SessionTraces } | undefined;
  try {
    return await waitFor(
      `${label}: the trees drawn from events to match Claude Code's own`,
      async () => {
        const [events, native] = await Promise.all([
          sessionTraces(llmflow, fromEvents),
          sessionTraces(llmflow, fromNative),
        ]);
        last = { events, native };
        const roots = (x: SessionTraces) => x.spans.filter((s) => !s.parent_id).length;
        const settled =
          roots(events) === traces &&
          roots(native) === traces &&
          events.orphans.length === 0 &&
          native.orphans.length === 0 &&
          JSON.stringify(events.shapes) === JSON.stringify(native.shapes);
        return settled ? last : undefined;
      },
      60_000,
    );
  } catch (err) {
    assert.deepEqual(last?.events.shapes, last?.native.shapes, `${label}: ${(err as Error).message}`);
    throw err;
  }
}
