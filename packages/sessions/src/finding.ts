/**
 * A finding as LLMFlow shows it: a span `claude_code.session.unaccounted` with ERROR status in
 * the trace of the session's latest turn (under its root), naming the tokens by type and the
 * cost that no event accounts for (or, counters missing, that no counter does), and the stretch
 * of time it concerns. Its id is derived from the session and the stretch: sent twice, stored once.
 */
import { rootSpanIdFor, spanIdFor, traceIdFor } from '@ccbridge/claude-events';
import { SpanKind, StatusCode, type KeyValue, type ResourceSpans } from '@ccbridge/otlp';
import { WHATS, type What } from './sides';
import type { Comparison, Verdict } from './store';

export const FINDING_SPAN = 'claude_code.session.unaccounted';

/** The attribute each compared quantity is named by on the span. */
const ATTRIBUTE: Record<What, string> = {
  input: 'claude_code.unaccounted.input_tokens',
  output: 'claude_code.unaccounted.output_tokens',
  cacheRead: 'claude_code.unaccounted.cache_read_tokens',
  cacheCreation: 'claude_code.unaccounted.cache_creation_tokens',
  cost: 'claude_code.unaccounted.cost_usd',
};

const MEANING: Record<Exclude<Verdict, 'ok'>, string> = {
  events_missing: "Claude Code's counters are above its api_request events: events never arrived",
  counters_missing:
    "the api_request events are above Claude Code's counters: metrics never arrived (or are turned off)",
  mismatch: "Claude Code's counters and its api_request events differ both ways",
};

/** Per quantity, summed over models: what the counters exceed the events by. */
export function totalsOf(diffs: Record<string, number>): Record<What, number> {
  const totals = Object.fromEntries(WHATS.map((w) => [w, 0])) as Record<What, number>;
  for (const [slot, d] of Object.entries(diffs)) {
    const what = slot.slice(slot.lastIndexOf('|') + 1) as What;
    if (what in totals) totals[what] += d;
  }
  return totals;
}

const iso = (ns: string) => new Date(Number(BigInt(ns || '0') / 1_000_000n)).toISOString();
const str = (key: string, v: string): KeyValue => ({ key, value: { stringValue: v } });

export function findingSpan(c: Comparison, verdict: Exclude<Verdict, 'ok'>): ResourceSpans {
  // A session none of whose events arrived has no turn: its finding is a trace of its own.
  const key = c.latestKey || `session/${c.session}`;
  const totals = totalsOf(c.diffs);
  const end = c.to || c.from;
  const start = c.from && c.from <= end ? c.from : end;
  return {
    resource: { attributes: [str('service.name', 'claude-code')] },
    scopeSpans: [
      {
        scope: { name: 'claude-code-llmflow-bridge' },
        spans: [
          {
            traceId: traceIdFor(key),
            spanId: spanIdFor('unaccounted', c.session, end),
            ...(c.latestKey && { parentSpanId: rootSpanIdFor(c.latestKey) }),
            name: FINDING_SPAN,
            kind: SpanKind.INTERNAL,
            startTimeUnixNano: start,
            endTimeUnixNano: end,
            status: { code: StatusCode.ERROR, message: MEANING[verdict] },
            attributes: [
              str('session.id', c.session),
              str('claude_code.unaccounted.kind', verdict),
              ...WHATS.map((w) => ({
                key: ATTRIBUTE[w],
                value: w === 'cost' ? { doubleValue: totals[w] } : { intValue: String(Math.round(totals[w])) },
              })),
              str('claude_code.unaccounted.by_model', JSON.stringify(c.diffs)),
              str('claude_code.unaccounted.from', iso(start)),
              str('claude_code.unaccounted.to', iso(end)),
              str('traceloop.span.kind', 'task'),
            ],
          },
        ],
      },
    ],
  };
}
