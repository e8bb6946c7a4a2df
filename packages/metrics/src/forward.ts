/**
 * One metrics job, from the queue to LLMFlow: its cumulative counters turned into deltas (once,
 * store.ts), its points posted in requests of a bounded size, each request once: a retry resumes
 * after the requests LLMFlow already took. A retry the bridge cannot know about (it died between
 * LLMFlow's answer and noting it) may post one request again: LLMFlow cannot tell a point it
 * already holds.
 */
import type { ExportMetricsRequest } from '@ccbridge/otlp';
import type { Logger } from '@ccbridge/log';
import { bridgeMetrics } from '@ccbridge/telemetry';
import { chunkRequest, convertRequest, cumulativePoints, type RedactAttributes } from './points';
import type { MetricsStore } from './store';

/** Where the points go (LLMFlow's client, @ccbridge/llmflow). Throws when it cannot take anything now. */
export interface MetricsSink {
  /** Whether it takes metrics at all (asked once, and again after a refusal). */
  accepts(): Promise<boolean>;
  post(
    request: ExportMetricsRequest,
    points: number,
  ): Promise<'unsupported' | { stored: number; refused: number; reason?: string }>;
}

export interface ForwardDeps {
  store: MetricsStore;
  sink: MetricsSink;
  log: Logger;
  /** Most points in one request. */
  maxPointsPerRequest: number;
  /** The privacy switches, applied to every attribute sent (none by default). */
  redact?: RedactAttributes;
  /**
   * Given the job's points as deltas (before they are redacted), on every attempt, whether or
   * not LLMFlow takes metrics: the sessions' ledgers count Claude Code's counters from them.
   */
  counted?: (jobId: string, deltas: ExportMetricsRequest) => Promise<void>;
}

export interface ForwardSummary {
  points: number;
  sent: number;
  /** Points not forwarded, by why. */
  unsupported?: number;
  refused?: number;
  stale?: number;
}

export async function forwardMetrics(
  deps: ForwardDeps,
  jobId: string,
  request: ExportMetricsRequest,
  items: number,
): Promise<ForwardSummary> {
  const record = await deps.store.record(jobId, cumulativePoints(request));
  if (deps.counted) await deps.counted(jobId, convertRequest(request, record.prev).request);
  if (!(await deps.sink.accepts())) {
    bridgeMetrics.droppedMetricPoints('unsupported', items);
    await deps.store.done(jobId);
    return { points: items, sent: 0, unsupported: items };
  }
  const converted = convertRequest(request, record.prev, deps.redact);
  const chunks = chunkRequest(converted.request, deps.maxPointsPerRequest);
  const summary: ForwardSummary = { points: items, sent: 0, ...(converted.stale > 0 && { stale: converted.stale }) };
  // Counted once per job, not on every attempt.
  if (record.made) bridgeMetrics.droppedMetricPoints('stale', converted.stale);
  for (let i = record.posted; i < chunks.length; i++) {
    const chunk = chunks[i]!;
    let answer = await deps.sink.post(chunk.request, chunk.points);
    // LLMFlow answered as if it had no metrics endpoint: asked again, and sent once more if it says it has.
    if (answer === 'unsupported' && (await deps.sink.accepts()))
      answer = await deps.sink.post(chunk.request, chunk.points);
    if (answer === 'unsupported') {
      const left = chunks.slice(i).reduce((n, c) => n + c.points, 0);
      bridgeMetrics.droppedMetricPoints('unsupported', left);
      summary.unsupported = left;
      break;
    }
    if (answer.refused > 0) {
      // Not sent again: LLMFlow stored the request's other points, and would store them twice.
      deps.log.error(
        { job: jobId, refused: answer.refused, reason: answer.reason },
        'LLMFlow refused metric points; they are not sent again',
      );
      bridgeMetrics.droppedMetricPoints('refused', answer.refused);
      summary.refused = (summary.refused ?? 0) + answer.refused;
    }
    bridgeMetrics.sentMetricPoints(answer.stored);
    summary.sent += answer.stored;
    await deps.store.posted(jobId);
  }
  await deps.store.done(jobId);
  return summary;
}
