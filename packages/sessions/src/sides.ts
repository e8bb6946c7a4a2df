/**
 * The two witnesses of a session's usage, as the ledger counts them: its `api_request` events
 * (tokens by type and model, cost) and Claude Code's counters (`claude_code.token.usage` by
 * `type` and `model`, `claude_code.cost.usage` by `model`), each as sums per `model|what`.
 */
import { claudeEventsOf, numberOf, promptKeyOf, stringOf, type ClaudeEvent } from '@ccbridge/claude-events';
import { attributesToRecord, type ExportLogsRequest, type ExportMetricsRequest } from '@ccbridge/otlp';

/** What is compared: the four token types (Claude Code's `type` values) and cost. */
export const WHATS = ['input', 'output', 'cacheRead', 'cacheCreation', 'cost'] as const;
export type What = (typeof WHATS)[number];

/** An api_request event's fields, by what they count. */
const EVENT_FIELDS: Record<What, string> = {
  input: 'input_tokens',
  output: 'output_tokens',
  cacheRead: 'cache_read_tokens',
  cacheCreation: 'cache_creation_tokens',
  cost: 'cost_usd',
};

export type Sums = Record<string, number>;
const slot = (model: string, what: What) => `${model}|${what}`;

export interface EventContribution {
  session: string;
  /** Identifies the event: a batch processed or sent twice counts it once. */
  id: string;
  /** The turn it belongs to (its interaction key), '' when it has no prompt.id. */
  key: string;
  /** Unix ns. */
  t: string;
  sums: Sums;
}

/** The api_request events of a logs batch (or its events), as contributions to their sessions' ledgers. */
export function eventContributions(batch: ExportLogsRequest | ClaudeEvent[]): EventContribution[] {
  const out: EventContribution[] = [];
  for (const e of Array.isArray(batch) ? batch : claudeEventsOf(batch).events) {
    if (e.name !== 'api_request') continue;
    const a = e.attributes;
    const session = stringOf(a['session.id']);
    if (!session) continue;
    const model = stringOf(a.model) ?? 'unknown';
    const sums: Sums = {};
    for (const what of WHATS) {
      const n = numberOf(a[EVENT_FIELDS[what]]);
      // A value that is no finite number (a duration of 1e308, NaN) counts nowhere.
      if (n !== undefined && n !== 0 && Number.isFinite(n)) sums[slot(model, what)] = n;
    }
    const promptId = stringOf(a['prompt.id']);
    const id = [
      String(e.timeNs),
      stringOf(a['event.sequence']) ?? '',
      stringOf(a.request_id) ?? '',
      promptId ?? '',
    ].join('|');
    out.push({ session, id, key: promptId ? promptKeyOf(promptId) : '', t: String(e.timeNs), sums });
  }
  return out;
}

export interface CounterContribution {
  session: string;
  t: string;
  sums: Sums;
}

/** The counters Claude Code keeps per session, and what each counts. */
const COUNTERS: Record<string, (attrs: Record<string, unknown>) => What | undefined> = {
  'claude_code.token.usage': (a) =>
    WHATS.includes(a.type as What) && a.type !== 'cost' ? (a.type as What) : undefined,
  'claude_code.cost.usage': () => 'cost',
};

interface Point {
  attributes?: Parameters<typeof attributesToRecord>[0];
  timeUnixNano?: string;
  asDouble?: number;
  asInt?: string | number;
}

/**
 * The token and cost counters of a metrics request (deltas: after cumulative counters were
 * turned into them), as contributions to their sessions' ledgers. Points without `session.id`
 * (Claude Code told to leave it off) cannot be told to a session and count nowhere.
 */
export function counterContributions(request: ExportMetricsRequest): CounterContribution[] {
  const out: CounterContribution[] = [];
  for (const rm of request.resourceMetrics ?? []) {
    for (const sm of rm.scopeMetrics ?? []) {
      for (const m of (sm.metrics ?? []) as { name?: string; sum?: { dataPoints?: Point[] } }[]) {
        const whatOf = COUNTERS[m.name ?? ''];
        if (!whatOf || !m.sum) continue;
        for (const p of m.sum.dataPoints ?? []) {
          const a = attributesToRecord(p.attributes);
          const session = stringOf(a['session.id']);
          const what = whatOf(a);
          const n = p.asInt !== undefined ? Number(p.asInt) : (p.asDouble ?? 0);
          if (!session || !what || !Number.isFinite(n) || n === 0) continue;
          out.push({ session, t: p.timeUnixNano ?? '0', sums: { [slot(stringOf(a.model) ?? 'unknown', what)]: n } });
        }
      }
    }
  }
  return out;
}
