/**
 * Claude Code's metrics to LLMFlow's `POST /v1/metrics`, as OTLP/HTTP JSON: LLMFlow 0.4.1 and
 * later store each data point (a row per point, under a fresh id: it cannot tell a point it
 * already holds, so the caller must not post one twice) and sum the integer values of
 * `%token%`/`%usage%` metrics by `model` and `type` at `/api/metrics/tokens`.
 *
 * Not every LLMFlow has the endpoint. Whether this one does is asked once, by posting an empty
 * request, and again after LLMFlow refused a request as if it had none (it may have been
 * replaced), or a while after it said no (it may have been upgraded). Each change of answer is
 * logged once.
 */
import type { ExportMetricsRequest } from '@ccbridge/otlp';
import type { Logger } from '@ccbridge/log';
import { SpanKind, bridgeMetrics, inSpan } from '@ccbridge/telemetry';
import { LLMFLOW_REASK_MS } from '@ccbridge/errors';
import { LlmflowUnavailableError } from './unavailable';
import { httpRequest, type HttpAnswer } from './http';

/** What LLMFlow made of one request. */
export type MetricsAnswer =
  /** It has no metrics endpoint (any more). */
  | 'unsupported'
  /** It stored `stored` points and refused `refused` (with its reason). */
  | { stored: number; refused: number; reason?: string };

export interface LlmflowMetricsOptions {
  url: string;
  timeoutMs: number;
  log: Logger;
  /** How long a "no" holds before LLMFlow is asked again (default: the policy's, @ccbridge/errors). */
  reaskMs?: number;
  now?: () => number;
}

/** Statuses that say LLMFlow has no such route: it takes no metrics. */
const NO_ENDPOINT = new Set([404, 405, 501]);
/** Statuses that say something about the points sent: refused, not to be sent again. */
const REFUSES_CONTENT = new Set([400, 413, 422]);

export class LlmflowMetricsClient {
  private readonly endpoint: string;
  /** What LLMFlow last said: unknown (ask), yes, or no since when (ms). */
  private answer: 'unknown' | 'yes' | { noSince: number } = 'unknown';
  /** The last answer logged, so each change is said once. */
  private said: 'yes' | 'no' | undefined;

  constructor(private readonly options: LlmflowMetricsOptions) {
    this.endpoint = `${options.url.replace(/\/+$/, '')}/v1/metrics`;
  }

  /**
   * Whether LLMFlow takes metrics; asks it when the last answer is unknown or an old no.
   * Throws LlmflowUnavailableError when it does not answer (the caller waits and asks again).
   */
  async accepts(): Promise<boolean> {
    const now = (this.options.now ?? Date.now)();
    if (this.answer === 'yes') return true;
    if (this.answer !== 'unknown' && now - this.answer.noSince < (this.options.reaskMs ?? LLMFLOW_REASK_MS))
      return false;
    const { status, text } = await this.send({ resourceMetrics: [] });
    const yes = status >= 200 && status < 300;
    if (!yes && !NO_ENDPOINT.has(status))
      throw new LlmflowUnavailableError(`LLMFlow at ${this.endpoint} answered ${status}: ${text.slice(0, 300)}`);
    this.answer = yes ? 'yes' : { noSince: now };
    this.say(yes ? 'yes' : 'no', status);
    return yes;
  }

  /** Posts one request of `points` data points. Throws LlmflowUnavailableError when LLMFlow cannot take anything now. */
  post(request: ExportMetricsRequest, points: number): Promise<MetricsAnswer> {
    return inSpan(
      'ccbridge.export',
      { kind: SpanKind.CLIENT, attributes: { 'ccbridge.metric_points': points, 'server.address': this.endpoint } },
      async () => {
        const started = performance.now();
        const took = () => (performance.now() - started) / 1000;
        let answer: { status: number; text: string };
        try {
          answer = await this.send(request);
        } catch (err) {
          bridgeMetrics.exportRequest(took(), 'unavailable');
          throw err;
        }
        const { status, text } = answer;
        if (NO_ENDPOINT.has(status)) {
          // Asked again before anything else is sent: LLMFlow may have been replaced by an older one.
          this.answer = 'unknown';
          bridgeMetrics.exportRequest(took(), 'refused');
          return 'unsupported';
        }
        if (REFUSES_CONTENT.has(status)) {
          bridgeMetrics.exportRequest(took(), 'refused');
          return { stored: 0, refused: points, reason: `LLMFlow answered ${status}: ${text.slice(0, 300)}` };
        }
        if (status < 200 || status >= 300) {
          bridgeMetrics.exportRequest(took(), 'unavailable');
          throw new LlmflowUnavailableError(`LLMFlow at ${this.endpoint} answered ${status}: ${text.slice(0, 300)}`);
        }
        const refusal = readPartialSuccess(text);
        bridgeMetrics.exportRequest(took(), refusal.refused === 0 ? 'ok' : 'partial');
        return {
          stored: points - refusal.refused,
          refused: refusal.refused,
          ...(refusal.reason && { reason: refusal.reason }),
        };
      },
    );
  }

  private async send(request: ExportMetricsRequest): Promise<HttpAnswer> {
    try {
      return await httpRequest('POST', this.endpoint, this.options.timeoutMs, JSON.stringify(request));
    } catch (err) {
      throw new LlmflowUnavailableError(`LLMFlow at ${this.endpoint} did not answer: ${(err as Error).message}`);
    }
  }

  private say(answer: 'yes' | 'no', status: number): void {
    if (this.said === answer) return;
    this.said = answer;
    if (answer === 'yes')
      this.options.log.info(
        { endpoint: this.endpoint },
        "LLMFlow accepts metrics: Claude Code's metrics are forwarded to it",
      );
    else
      this.options.log.warn(
        { endpoint: this.endpoint, status },
        `LLMFlow has no metrics endpoint (it answered ${status}): Claude Code's metrics are not forwarded to it (LLMFlow 0.4.1 and later take them)`,
      );
  }
}

/** LLMFlow's partialSuccess for metrics: how many points it refused, and its reasons. */
function readPartialSuccess(text: string): { refused: number; reason?: string } {
  let body: { partialSuccess?: { rejectedDataPoints?: number | string; errorMessage?: string } } = {};
  try {
    body = text ? (JSON.parse(text) as typeof body) : {};
  } catch {
    // A 2xx with a body that is not JSON still means stored.
  }
  const refused = Number(body.partialSuccess?.rejectedDataPoints ?? 0) || 0;
  return { refused, ...(body.partialSuccess?.errorMessage && { reason: body.partialSuccess.errorMessage }) };
}
