/**
 * What a shard handed back (lua/batch.lua, lua/due.lua), as spans to send and the commit that
 * says what was sent (lua/commit.lua). Redis decides what may go and when; this only draws it:
 *
 * | handed back | drawn as                                                   | committed as          |
 * |-------------|------------------------------------------------------------|-----------------------|
 * | `release`   | held spans of turns drawn already, in their trace          | (marked sent already) |
 * | `placed`    | a placed subagent's spans, in its Agent call's trace       | `forget` those sent   |
 * | `met`       | Agent calls' tool spans, with their subagents' totals      | `calls`               |
 * | `claimed`   | roots (interaction.ts rootSpanOf) with the spans held for them | `drawn`           |
 */
import type { Logger } from '@ccbridge/log';
import type { ResourceSpans } from '@ccbridge/otlp';
import { heldCallSpans, placedSpans, placementOf } from './agents';
import { releasedSpansOf, rootSpanOf } from './interaction';
import type { Commit, ShardOutcome } from './lifecycle/store';

const idsOf = (rs: ResourceSpans[]) => rs.flatMap((r) => r.scopeSpans!.flatMap((ss) => ss.spans!.map((s) => s.spanId)));

/** The spans to send for what a shard handed back, and the commit to make once they are sent. */
export function drawOutcome(o: Pick<ShardOutcome, 'release' | 'placed' | 'met' | 'claimed'>, log: Logger) {
  const spans = releasedSpansOf(o.release);
  const forget: NonNullable<Commit['forget']> = [];
  let subagentSpans = 0;
  for (const p of o.placed) {
    const placement = placementOf(p.session, p.at);
    const { spans: placed, callFolds, merged } = placedSpans(placement, p.agent, p.spans);
    // Totals onto a call of a subagent (the main agent's meet their call in Redis): a row of their own.
    const own = callFolds.flatMap(
      (f) => placedSpans({ ...placement, callSpanId: undefined }, p.agent, [JSON.stringify(f)]).spans,
    );
    spans.push(...placed, ...own);
    forget.push({
      session: p.session,
      agent: p.agent,
      spanIds: [...idsOf(placed), ...callFolds.map((f) => f.spanId), ...merged],
      leased: p.ids,
    });
    subagentSpans += p.spans.length;
    if (p.at.rule === 'root')
      log.warn(
        { session: p.session, agent: p.agent },
        "no Agent call could be told for a subagent: its spans go under its prompt's root",
      );
  }
  spans.push(...heldCallSpans(o.met), ...o.claimed.map(rootSpanOf));
  const drawn = o.claimed.map((ix) => ({ key: ix.key, complete: ix.verdict.complete !== false, held: ix.heldIds }));
  const commit: Commit = { forget, calls: o.met, drawn };
  return { spans, commit, subagentSpans };
}
export type Drawn = ReturnType<typeof drawOutcome>;
