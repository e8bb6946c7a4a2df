/**
 * What a shard handed back (lua/batch.lua, lua/due.lua), as spans to send and the commit that
 * says what was sent (lua/commit.lua). Redis decides what may go and when (lua/held.lua says it
 * for every held span, lifecycle.lua for roots); this only draws it:
 *
 * | handed back | what waited (where, keys.ts)                                        | goes         | committed as |
 * |-------------|---------------------------------------------------------------------|--------------|--------------|
 * | `claimed`   | a root, with the spans held for it (`events`: LLM calls awaiting an | L.decide     | `drawn`      |
 * |             | answer or input, folds, adopted start-up spans)                     |              |              |
 * | `release`   | the same, come after their root was drawn (or claimed)              | H.releasable | sent already |
 * | `placed`    | a subagent's spans (`agentSpans`)                                   | H.ready      | `forget`     |
 * |             | a main-agent Agent call's tool span and its subagent's totals       | H.meet       |              |
 * |             | (`agentSpans` of its holder `call:<id>`)                            |              |              |
 *
 * Start-up spans wait in `pending` for their process's first prompt, then join its `events`
 * (turns.lua adopt, H.sameProcess). Roots are drawn by interaction.ts rootSpanOf, placed spans in their Agent
 * call's trace (agents.ts placedSpans), calls with their totals (agents.ts heldCallSpans).
 */
import type { Logger } from '@ccbridge/log';
import type { ResourceSpans } from '@ccbridge/otlp';
import { CALL_HOLDER, heldCallSpans, placedSpans, placementOf } from './agents';
import { releasedSpansOf, rootSpanOf } from './interaction';
import type { Commit, ShardOutcome } from './lifecycle/store';

const idsOf = (rs: ResourceSpans[]) => rs.flatMap((r) => r.scopeSpans!.flatMap((ss) => ss.spans!.map((s) => s.spanId)));

/** The spans to send for what a shard handed back, and the commit to make once they are sent. */
export function drawOutcome(o: Pick<ShardOutcome, 'release' | 'placed' | 'claimed'>, log: Logger) {
  const spans = releasedSpansOf(o.release);
  const forget: NonNullable<Commit['forget']> = [];
  let subagentSpans = 0;
  for (const p of o.placed) {
    if (p.agent.startsWith(CALL_HOLDER)) {
      spans.push(...heldCallSpans(p));
      forget.push({ session: p.session, agent: p.agent, spanIds: p.ids, leased: p.ids });
      continue;
    }
    const { spans: placed, merged } = placedSpans(placementOf(p.session, p.at), p.agent, p.spans);
    spans.push(...placed);
    forget.push({ session: p.session, agent: p.agent, spanIds: [...idsOf(placed), ...merged], leased: p.ids });
    subagentSpans += p.spans.length;
    if (p.at.rule === 'root')
      log.warn(
        { session: p.session, agent: p.agent },
        "no Agent call could be told for a subagent: its spans go under its prompt's root",
      );
  }
  spans.push(...o.claimed.map(rootSpanOf));
  const drawn = o.claimed.map((ix) => ({ key: ix.key, complete: ix.verdict.complete !== false, held: ix.heldIds }));
  const commit: Commit = { forget, drawn };
  return { spans, commit, subagentSpans };
}
export type Drawn = ReturnType<typeof drawOutcome>;
