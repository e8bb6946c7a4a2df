/**
 * The export stage: posts spans to LLMFlow's `POST /v1/traces` as OTLP/HTTP JSON, the only
 * encoding LLMFlow takes.
 *
 * Written on its own HTTP client (http.ts) rather than @opentelemetry/exporter-trace-otlp-http
 * because the bridge must read what LLMFlow answers: LLMFlow refuses a span id it already stores through
 * `partialSuccess` ("UNIQUE constraint failed"), which for a bridge that derives ids and may
 * deliver twice means "already stored", while the SDK exporter only logs partial success. And
 * the bridge forwards spans it holds as OTLP/JSON, not as SDK span objects.
 *
 * What can go wrong, and what the caller is told:
 * - LLMFlow cannot take anything now (no answer, timeout, 408/429/5xx, or 401/403/404/405,
 *   which mean a wrong LLMFLOW_URL, or a partialSuccess saying its database was locked):
 *   LlmflowUnavailableError, thrown at once; nothing is lost, the caller keeps the batch and
 *   tries again later.
 * - LLMFlow refuses particular spans (400/413/422 on a single span, or a partialSuccess
 *   rejection other than a duplicate): every other span is still delivered, and the refused
 *   ones are returned with LLMFlow's reason and the span itself (for the dead-letter store).
 *   A request refused as a whole is split in halves until the refused spans stand alone.
 * - A body too large (413): every span is cut to `spanMaxBytes` before it is sent (fit.ts);
 *   a request LLMFlow still finds too large teaches the exporter its body limit, and later
 *   requests are cut to fit under it; a single span still too large is cut to half, and half
 *   again, before it counts as refused.
 */
import { countItems, type ResourceSpans, type Span } from '@ccbridge/otlp';
import { LlmflowUnavailableError } from './unavailable';
import type { Logger } from '@ccbridge/log';
import { SpanKind, bridgeMetrics, inSpan } from '@ccbridge/telemetry';
import { fitResourceSpans, fitSpan, spanBytes } from './fit';
import { httpRequest, type HttpAnswer } from './http';

export { fitSpan, fitResourceSpans, spanBytes, TRIMMED_BYTES, TRIMMED_KEYS, TRIMMED_MESSAGES } from './fit';
export { LlmflowUnavailableError } from './unavailable';
export { httpRequest, type HttpAnswer } from './http';
export { LlmflowMetricsClient, type LlmflowMetricsOptions, type MetricsAnswer } from './metrics';

/** Whether anything answers HTTP at LLMFlow's base URL (its health route), and how. */
export async function probeLlmflow(
  url: string,
  timeoutMs = 5_000,
): Promise<{ answers: boolean; status?: number; error?: string }> {
  try {
    const r = await httpRequest('GET', `${url.replace(/\/+$/, '')}/api/health`, timeoutMs);
    return { answers: true, status: r.status };
  } catch (err) {
    return { answers: false, error: (err as NodeJS.ErrnoException).code ?? (err as Error).message };
  }
}

/** What to set when LLMFlow does not answer: said at start-up, in pauses and by `ccbridge status`. */
export const LLMFLOW_URL_HINT =
  "set LLMFLOW_URL to where LLMFlow listens (a stock `npx llmflow`: http://127.0.0.1:1337; the compose file's: http://llmflow:3000; on the host from compose: http://host.docker.internal:1337, with LLMFlow listening beyond loopback)";

export interface RefusedSpan {
  spanId: string;
  name: string;
  reason: string;
  /** The span as it was given (not cut), with its resource and scope. */
  resourceSpans: ResourceSpans;
}

export interface ExportResult {
  /** Spans LLMFlow stored now. */
  stored: number;
  /** Spans LLMFlow already held (a repeated delivery). */
  duplicates: number;
  /** Spans LLMFlow would not take, with its reason. */
  refused: RefusedSpan[];
}

export interface LlmflowExporterOptions {
  url: string;
  timeoutMs: number;
  maxSpansPerRequest: number;
  /** Each span is cut to fit in this many bytes of JSON before it is sent (fit.ts). */
  spanMaxBytes: number;
  log: Logger;
  headers?: Record<string, string>;
}

/** Statuses that say something about the spans sent, rather than about LLMFlow or the URL. */
const REFUSES_CONTENT = new Set([400, 413, 422]);
const DUPLICATE = /UNIQUE constraint failed/i;
/** LLMFlow's SQLite was busy (another connection held it): nothing wrong with the span, it can take it later. */
const BUSY = /database is locked|SQLITE_BUSY/i;
/** express answers 413 "request entity too large"; some servers say so with a 400. */
const tooLarge = (status: number, text: string) => status === 413 || /too large|entity/i.test(text);
/** A span is not cut smaller than this to make it fit: below it, LLMFlow refuses it for good. */
const MIN_SPAN_BYTES = 2048;
/** Bytes of a request besides its spans: resource, scope, and the JSON around them. */
const requestOverhead = (rs: ResourceSpans) => Buffer.byteLength(JSON.stringify({ ...rs, scopeSpans: [] })) + 256;

const spansIn = (batch: ResourceSpans[]) =>
  batch.flatMap((rs) => (rs.scopeSpans ?? []).flatMap((ss) => ss.spans ?? []));
const spanCount = (batch: ResourceSpans[]) => countItems('traces', { resourceSpans: batch });
const sum = (a: ExportResult, b: ExportResult): ExportResult => ({
  stored: a.stored + b.stored,
  duplicates: a.duplicates + b.duplicates,
  refused: [...a.refused, ...b.refused],
});

/**
 * Splits a request into requests of at most `max` spans and, when `maxBytes` is given, of about
 * at most that many bytes (a span larger than that goes alone), keeping resources and scopes.
 */
export function chunkResourceSpans(batch: ResourceSpans[], max: number, maxBytes = Infinity): ResourceSpans[][] {
  const chunks: ResourceSpans[][] = [];
  let current: ResourceSpans[] = [];
  let count = 0;
  let bytes = 0;
  const flush = () => {
    if (count > 0) chunks.push(current);
    current = [];
    count = 0;
    bytes = 0;
  };
  for (const rs of batch) {
    const overhead = maxBytes === Infinity ? 0 : requestOverhead(rs);
    for (const ss of rs.scopeSpans ?? []) {
      let take: Span[] = [];
      const close = () => {
        if (take.length > 0) current.push({ ...rs, scopeSpans: [{ ...ss, spans: take }] });
        take = [];
      };
      for (const span of ss.spans ?? []) {
        const size = maxBytes === Infinity ? 0 : spanBytes(span) + 1;
        if (count === max || (count > 0 && bytes + overhead + size > maxBytes)) {
          close();
          flush();
        }
        take.push(span);
        count += 1;
        bytes += size;
      }
      close();
    }
  }
  flush();
  return chunks;
}

/**
 * The spans of one export() call as they were given, by id: what a refusal records and cuts
 * from. The index is built on first use: only a refusal or a cut needs it.
 */
type Originals = (spanId: string) => { rs: ResourceSpans; span: Span } | undefined;

function originalsOf(batch: ResourceSpans[]): Originals {
  let index: Map<string, { rs: ResourceSpans; span: Span }> | undefined;
  return (spanId) => {
    if (!index) {
      index = new Map();
      for (const rs of batch) {
        for (const ss of rs.scopeSpans ?? []) {
          for (const span of ss.spans ?? [])
            index.set(span.spanId, { rs: { ...rs, scopeSpans: [{ ...ss, spans: [span] }] }, span });
        }
      }
    }
    return index.get(spanId);
  };
}

export class LlmflowExporter {
  private readonly endpoint: string;
  /** The largest body LLMFlow is known to take, once a 413 taught it (it is never raised again). */
  private bodyLimit = Infinity;

  constructor(private readonly options: LlmflowExporterOptions) {
    this.endpoint = `${options.url.replace(/\/+$/, '')}/v1/traces`;
  }

  async export(resourceSpans: ResourceSpans[]): Promise<ExportResult> {
    const originals = originalsOf(resourceSpans);
    const fitted = fitResourceSpans(resourceSpans, this.options.spanMaxBytes);
    let total: ExportResult = { stored: 0, duplicates: 0, refused: [] };
    for (const chunk of chunkResourceSpans(fitted, this.options.maxSpansPerRequest, this.bodyLimit)) {
      total = sum(total, await this.post(chunk, originals));
    }
    if (total.duplicates > 0)
      this.options.log.debug({ duplicates: total.duplicates }, 'LLMFlow already held some spans');
    bridgeMetrics.sentSpans(total.stored);
    bridgeMetrics.failedSpans('refused', total.refused.length);
    return total;
  }

  private post(chunk: ResourceSpans[], originals: Originals): Promise<ExportResult> {
    const spans = spanCount(chunk);
    return inSpan(
      'ccbridge.export',
      { kind: SpanKind.CLIENT, attributes: { 'ccbridge.spans': spans, 'server.address': this.endpoint } },
      () => this.postOnce(chunk, spans, originals),
    );
  }

  private async postOnce(chunk: ResourceSpans[], spans: number, originals: Originals): Promise<ExportResult> {
    const body = Buffer.from(JSON.stringify({ resourceSpans: chunk }));
    let response: HttpAnswer;
    const started = performance.now();
    const took = () => (performance.now() - started) / 1000;
    const unavailable = (message: string) => {
      bridgeMetrics.exportRequest(took(), 'unavailable');
      bridgeMetrics.failedSpans('unavailable', spans);
      return new LlmflowUnavailableError(message);
    };
    try {
      response = await httpRequest('POST', this.endpoint, this.options.timeoutMs, body, this.options.headers);
    } catch (err) {
      throw unavailable(`LLMFlow at ${this.endpoint} did not answer: ${(err as Error).message}`);
    }
    const { text } = response;
    if (REFUSES_CONTENT.has(response.status)) {
      bridgeMetrics.exportRequest(took(), 'refused');
      const large = tooLarge(response.status, text);
      const bytes = body.length;
      if (large && spans > 1) this.learnBodyLimit(bytes);
      if (spans > 1) return this.postInHalves(chunk, spans, `LLMFlow answered ${response.status}`, originals);
      const smaller = large ? this.cutSmaller(chunk, bytes, originals) : undefined;
      if (smaller) return this.post(smaller, originals);
      return {
        stored: 0,
        duplicates: 0,
        refused: this.refuse(chunk, `LLMFlow answered ${response.status}: ${text.slice(0, 300)}`, originals),
      };
    }
    if (response.status < 200 || response.status >= 300)
      throw unavailable(`LLMFlow at ${this.endpoint} answered ${response.status}: ${text.slice(0, 300)}`);
    const refusal = readPartialSuccess(text);
    bridgeMetrics.exportRequest(took(), refusal.rejected === 0 ? 'ok' : 'partial');
    if (refusal.rejected === 0) return { stored: spans, duplicates: 0, refused: [] };
    const duplicates = refusal.reasons.filter((r) => DUPLICATE.test(r)).length;
    const explained = refusal.reasons.length >= refusal.rejected;
    if (explained && duplicates === refusal.rejected) return { stored: spans - duplicates, duplicates, refused: [] };
    // Not the spans' fault: the caller keeps the batch and tries again (what was stored comes back as duplicates).
    if (refusal.reasons.some((r) => BUSY.test(r)))
      throw unavailable(`LLMFlow at ${this.endpoint} could not store spans now: ${refusal.reasons.join('; ')}`);
    if (spans > 1) {
      // LLMFlow lists only its first few reasons and never says which span each is about: send
      // again in halves until each refusal stands alone. What this request stored comes back
      // as duplicates there.
      const again = await this.postInHalves(chunk, spans, 'LLMFlow refused some spans', originals);
      const storedNow = spans - refusal.rejected;
      return { ...again, stored: again.stored + storedNow, duplicates: again.duplicates - storedNow };
    }
    return {
      stored: 0,
      duplicates: 0,
      refused: this.refuse(chunk, refusal.reasons.join('; ') || 'refused without a reason', originals),
    };
  }

  private async postInHalves(
    chunk: ResourceSpans[],
    spans: number,
    why: string,
    originals: Originals,
  ): Promise<ExportResult> {
    this.options.log.debug({ spans, why }, 'splitting a request to LLMFlow');
    const [a = [], b = []] = chunkResourceSpans(chunk, Math.ceil(spans / 2));
    // Both halves go, whatever the first one met: one refused span must not hold back the rest.
    return sum(await this.post(a, originals), await this.post(b, originals));
  }

  private learnBodyLimit(refusedBytes: number): void {
    // Half of what was refused: below the real limit after a few refusals at most, and a
    // request never needs to be cut again. Too low only costs more, smaller requests.
    const limit = Math.floor(refusedBytes / 2);
    if (limit >= this.bodyLimit) return;
    this.bodyLimit = limit;
    this.options.log.warn(
      { bodyLimitBytes: limit },
      'LLMFlow refused a request as too large; later requests are cut to fit',
    );
  }

  /** A lone span LLMFlow found too large, cut from its original to half its size; undefined when it cannot shrink. */
  private cutSmaller(chunk: ResourceSpans[], bytes: number, originals: Originals): ResourceSpans[] | undefined {
    const [rs] = chunk;
    const [span] = spansIn(chunk);
    if (!rs || !span) return undefined;
    const target = Math.floor(Math.min(bytes, this.options.spanMaxBytes) / 2);
    if (target < MIN_SPAN_BYTES) return undefined;
    const smaller = fitSpan(originals(span.spanId)?.span ?? span, target);
    if (spanBytes(smaller) >= spanBytes(span)) return undefined;
    this.options.log.debug(
      { span: `${span.name} ${span.spanId}`, targetBytes: target },
      'LLMFlow found a span too large; cutting it further',
    );
    return [{ ...rs, scopeSpans: [{ ...rs.scopeSpans?.[0], spans: [smaller] }] }];
  }

  /** The spans of a request LLMFlow refused, as they were given; the caller records and logs them. */
  private refuse(chunk: ResourceSpans[], reason: string, originals: Originals): RefusedSpan[] {
    return spansIn(chunk).map((s) => ({
      spanId: s.spanId,
      name: s.name,
      reason,
      resourceSpans: originals(s.spanId)?.rs ?? {
        ...chunk[0],
        scopeSpans: [{ ...chunk[0]?.scopeSpans?.[0], spans: [s] }],
      },
    }));
  }
}

/** LLMFlow's partialSuccess: how many spans it refused, and the reasons it lists ("; "-joined). */
function readPartialSuccess(text: string): { rejected: number; reasons: string[] } {
  type Answer = { partialSuccess?: { rejectedSpans?: number | string; errorMessage?: string } };
  let body: Answer = {};
  try {
    body = text ? (JSON.parse(text) as Answer) : {};
  } catch {
    // A 2xx with a body that is not JSON still means stored.
  }
  const rejected = Number(body.partialSuccess?.rejectedSpans ?? 0) || 0;
  const reasons = (body.partialSuccess?.errorMessage ?? '').split(/;\s*/).filter(Boolean);
  return { rejected, reasons };
}
