/**
 * Turns per second into LLMFlow: the same turns (distinct copies of the two-tools capture, one
 * prompt each) queued, then drained by one worker into a fresh LLMFlow, once with events folded
 * onto their rows (BRIDGE_EVENT_ROWS=fold, the default) and once with every event a row of its own
 * (each, as before); beside it LLMFlow's ceiling in turns/s: its own spans/s (export.ts) over the
 * rows a turn takes. Fewer rows per turn carry more turns into the same LLMFlow.
 *
 * Alone: node --import tsx test/bench/turns.ts (BENCH_BATCHES turns, 300 by default).
 */
import {
  decodeExportRequest,
  encodeExportRequest,
  type ExportLogsRequest,
  type ExportMetricsRequest,
} from '@ccbridge/otlp';
import { logsOf, payloads } from '../support/fixtures';
import { post, startBridge, startLlmflow, startRedis, waitFor } from '../support/peers';
import { llmflowCeiling } from './export';

/** A request with its session and prompt ids made unique (`id-i`), as OTLP/JSON text. */
export function distinct(template: ExportLogsRequest | ExportMetricsRequest, i: number): string {
  return JSON.stringify(template).replace(
    /"(prompt\.id|session\.id)","value":\{"stringValue":"([^"]+)"/g,
    (_m, key, id) => `"${key}","value":{"stringValue":"${id}-${i}"`,
  );
}

/** The capture with its session and prompt ids made unique, so every batch is its own interaction. */
export function batch(template: ExportLogsRequest, i: number): Uint8Array {
  return encodeExportRequest('logs', JSON.parse(distinct(template, i)) as ExportLogsRequest, 'protobuf');
}

/** The capture's metrics request (what the same `claude -p` process sent at its exit). */
export function metricsTemplate(): ExportMetricsRequest {
  const p = payloads('protobuf', 'two-tools').find((x) => x.signal === 'metrics')!;
  return decodeExportRequest('metrics', p.body, p.format);
}

/** The metrics of batch i's session (the same session id as `batch(…, i)`), as protobuf. */
export function metricsBatch(template: ExportMetricsRequest, i: number): Uint8Array {
  return encodeExportRequest('metrics', JSON.parse(distinct(template, i)) as ExportMetricsRequest, 'protobuf');
}

/** n distinct turns of the two-tools capture, as protobuf bodies. */
export const turnBodies = (n: number) => Array.from({ length: n }, (_, i) => batch(logsOf('protobuf', 'two-tools'), i));

export interface TurnRate {
  rows: 'fold' | 'each';
  turns: number;
  rowsPerTurn: number;
  turnsPerSecond: number;
}

/** Queues the turns, then times one worker drawing them all into LLMFlow (every root stored). */
export async function turnsIntoLlmflow(bodies: Uint8Array[], rows: TurnRate['rows']): Promise<TurnRate> {
  const [redis, llmflow] = await Promise.all([startRedis(), startLlmflow()]);
  const common = {
    REDIS_URL: redis.url,
    LLMFLOW_URL: llmflow.url,
    LOG_LEVEL: 'warn',
    BRIDGE_QUEUE_MAX_WAITING: String(bodies.length * 2),
    BRIDGE_EVENT_ROWS: rows,
  };
  const ingest = await startBridge({ ...common, BRIDGE_ROLE: 'ingest' });
  try {
    for (const body of bodies) {
      const r = await post(`${ingest.url}/v1/logs`, body, 'application/x-protobuf');
      if (r.status !== 200) throw new Error(`ingest answered ${r.status}`);
    }
    const worker = await startBridge({ ...common, BRIDGE_ROLE: 'worker' });
    const t0 = performance.now();
    const stored = await waitFor(
      'every turn in LLMFlow',
      async () => {
        const spans = await llmflow.listed();
        return spans.filter((s) => !s.parent_id).length >= bodies.length ? spans : undefined;
      },
      600_000,
    );
    const seconds = (performance.now() - t0) / 1000;
    await worker.stop();
    return {
      rows,
      turns: bodies.length,
      rowsPerTurn: Math.round((stored.length / bodies.length) * 10) / 10,
      turnsPerSecond: Math.round(bodies.length / seconds),
    };
  } finally {
    await ingest.stop();
    await Promise.all([llmflow.stop(), redis.stop()]);
  }
}

/** The figures line: both ways, each beside LLMFlow's ceiling in turns/s for its rows per turn. */
export function turnsLine(fold: TurnRate, each: TurnRate, llmflowSpansPerSecond: number) {
  const r2 = (x: number) => Math.round(x * 100) / 100;
  const ceiling = (t: TurnRate) => Math.round(llmflowSpansPerSecond / t.rowsPerTurn);
  return {
    stage:
      "turns/s into LLMFlow, rows folded (default) and every event a row (BRIDGE_EVENT_ROWS=each), beside LLMFlow's ceiling",
    fold: { ...fold, llmflowCeilingTurnsPerSecond: ceiling(fold) },
    each: { ...each, llmflowCeilingTurnsPerSecond: ceiling(each) },
    foldToEach: r2(fold.turnsPerSecond / each.turnsPerSecond),
    target: 'foldToEach about 1.6',
  };
}

/** Both ways and LLMFlow's ceiling, over the same turns. */
export async function measureTurns(n: number) {
  const bodies = turnBodies(n);
  const fold = await turnsIntoLlmflow(bodies, 'fold');
  const each = await turnsIntoLlmflow(bodies, 'each');
  const ceiling = await llmflowCeiling(bodies);
  return turnsLine(fold, each, ceiling.spansPerSecond);
}

if (require.main === module) {
  measureTurns(Number(process.env.BENCH_BATCHES ?? 300)).then(
    (line) => console.log(JSON.stringify(line)),
    (err) => {
      console.error(err);
      process.exit(1);
    },
  );
}
