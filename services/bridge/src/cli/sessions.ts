/**
 * `ccbridge sessions`: each Claude Code session as the bridge reconciled it: its turns, the
 * tokens and cost its api_request events add up to and what Claude Code's counters say, what was
 * reported unaccounted, and the verdict. Exit 1 when a session's verdict is not ok.
 */
import { LedgerStore, WHATS, type SessionLedger, type Sums } from '@ccbridge/sessions';
import { EXIT, answer, flag, settings, toolRedis, within, type Args } from './io';

const TIMEOUT_MS = 10_000;

/** Per quantity over every model: input, output, cacheRead, cacheCreation tokens and cost. */
const totals = (sums: Sums) =>
  Object.fromEntries(
    WHATS.map((w) => [
      w,
      Object.entries(sums)
        .filter(([k]) => k.endsWith(`|${w}`))
        .reduce((n, [, v]) => n + v, 0),
    ]),
  );

export async function sessions(args: Args): Promise<number> {
  const config = settings();
  const { redis } = toolRedis(config);
  let list: SessionLedger[];
  try {
    list = await within(
      new LedgerStore(redis).sessions(Number(flag(args, 'limit') ?? 1000)),
      TIMEOUT_MS,
      `Redis gave no answer within ${TIMEOUT_MS / 1000} s`,
    );
  } finally {
    redis.disconnect();
  }
  const result = list.map((s) => ({
    ...s,
    totals: { events: totals(s.events), counters: totals(s.counters), unaccounted: totals(s.unaccounted) },
  }));
  answer(args, { sessions: result }, () =>
    result.length === 0
      ? ['no sessions yet (they are counted while BRIDGE_FORWARD_METRICS is on)']
      : result.map((s) => {
          const t = (x: Record<string, number>) =>
            `${x.input} in, ${x.output} out, ${x.cacheRead} cache read, ${x.cacheCreation} cache write, $${x.cost!.toFixed(4)}`;
          return [
            `${s.session}  ${s.verdict}${s.findings > 0 ? ` (${s.findings} finding${s.findings > 1 ? 's' : ''})` : ''}, ${s.turns.drawn} turn${s.turns.drawn === 1 ? '' : 's'} (${s.turns.complete} complete, ${s.turns.incomplete} incomplete)`,
            `  events:   ${t(s.totals.events)}`,
            `  counters: ${t(s.totals.counters)}`,
          ].join('\n');
        }),
  );
  return result.every((s) => s.verdict === 'ok' || s.verdict === 'pending') ? EXIT.ok : EXIT.problem;
}
