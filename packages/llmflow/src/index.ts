/**
 * The export stage: posts spans to LLMFlow's `POST /v1/traces` as OTLP/HTTP JSON, the only
 * encoding LLMFlow takes.
 *
 * Written on fetch rather than @opentelemetry/exporter-trace-otlp-http because the bridge must
 * read what LLMFlow answers: LLMFlow rejects a span id it already stores through
 * `partialSuccess` ("UNIQUE constraint failed"), which for a bridge that derives ids and may
 * deliver twice means "already stored", while the SDK exporter only logs partial success. And
 * the bridge forwards spans it holds as OTLP/JSON, not as SDK span objects.
 *
 * Retries belong to the queue: a retryable failure throws ExportRetryableError and the job is
 * retried with back-off; a permanent one (LLMFlow refusing the request itself) throws
 * ExportRejectedError.
 */
import type { ResourceSpans } from '@ccbridge/otlp';
import type { Logger } from '@ccbridge/log';

export class ExportRetryableError extends Error {
  override name = 'ExportRetryableError';
}
export class ExportRejectedError extends Error {
  override name = 'ExportRejectedError';
}

export interface ExportResult {
  /** Spans LLMFlow stored now. */
  stored: number;
  /** Spans LLMFlow already held (a repeated delivery). */
  duplicates: number;
}

export interface TraceExporter {
  export(resourceSpans: ResourceSpans[]): Promise<ExportResult>;
}

export interface LlmflowExporterOptions {
  url: string;
  timeoutMs: number;
  maxSpansPerRequest: number;
  log: Logger;
  headers?: Record<string, string>;
}

/** Statuses after which the same request may succeed later (as the OTLP exporters treat them). */
const RETRYABLE = new Set([408, 429, 500, 502, 503, 504]);
const DUPLICATE = /UNIQUE constraint failed/i;

const spanCount = (batch: ResourceSpans[]) =>
  batch.reduce((n, rs) => n + (rs.scopeSpans ?? []).reduce((m, ss) => m + (ss.spans?.length ?? 0), 0), 0);

/** Splits a request into requests of at most `max` spans, keeping resources and scopes. */
export function chunkResourceSpans(batch: ResourceSpans[], max: number): ResourceSpans[][] {
  const chunks: ResourceSpans[][] = [];
  let current: ResourceSpans[] = [];
  let size = 0;
  for (const rs of batch) {
    for (const ss of rs.scopeSpans ?? []) {
      const spans = ss.spans ?? [];
      for (let i = 0; i < spans.length; ) {
        if (size === max) {
          chunks.push(current);
          current = [];
          size = 0;
        }
        const take = spans.slice(i, i + (max - size));
        current.push({ ...rs, scopeSpans: [{ ...ss, spans: take }] });
        size += take.length;
        i += take.length;
      }
    }
  }
  if (size > 0) chunks.push(current);
  return chunks;
}

export class LlmflowExporter implements TraceExporter {
  private readonly endpoint: string;

  constructor(private readonly options: LlmflowExporterOptions) {
    this.endpoint = `${options.url.replace(/\/+$/, '')}/v1/traces`;
  }

  async export(resourceSpans: ResourceSpans[]): Promise<ExportResult> {
    const total: ExportResult = { stored: 0, duplicates: 0 };
    for (const chunk of chunkResourceSpans(resourceSpans, this.options.maxSpansPerRequest)) {
      const r = await this.post(chunk);
      total.stored += r.stored;
      total.duplicates += r.duplicates;
    }
    return total;
  }

  private async post(chunk: ResourceSpans[]): Promise<ExportResult> {
    const spans = spanCount(chunk);
    let response: Response;
    try {
      response = await fetch(this.endpoint, {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...this.options.headers },
        body: JSON.stringify({ resourceSpans: chunk }),
        signal: AbortSignal.timeout(this.options.timeoutMs),
      });
    } catch (err) {
      throw new ExportRetryableError(`LLMFlow at ${this.endpoint} did not answer: ${(err as Error).message}`);
    }
    const text = await response.text().catch(() => '');
    if (response.status === 413 && spans > 1) {
      // This LLMFlow takes smaller bodies than we sent.
      return this.postInHalves(chunk, spans);
    }
    if (!response.ok) {
      const message = `LLMFlow answered ${response.status} to ${spans} spans: ${text.slice(0, 300)}`;
      throw RETRYABLE.has(response.status) ? new ExportRetryableError(message) : new ExportRejectedError(message);
    }
    const refusal = readPartialSuccess(text);
    if (refusal.rejected === 0) return { stored: spans, duplicates: 0 };
    if (refusal.reasons.length < refusal.rejected && spans > 1) {
      // LLMFlow lists only its first few reasons: send again in smaller requests until every
      // refusal is explained. What this request stored comes back as duplicates there.
      const again = await this.postInHalves(chunk, spans);
      const storedNow = spans - refusal.rejected;
      return { stored: again.stored + storedNow, duplicates: again.duplicates - storedNow };
    }
    const duplicates = refusal.reasons.filter((r) => DUPLICATE.test(r)).length;
    if (duplicates < refusal.rejected) {
      // Not knowing whether LLMFlow's reason is lasting (a bad span) or passing (its database
      // was busy), the batch is tried again: spans it stored by now come back as duplicates,
      // and a span refused every time leaves the batch in the failed set, not lost unseen.
      throw new ExportRetryableError(`LLMFlow refused ${refusal.rejected - duplicates} of ${spans} spans: ${refusal.reasons.join('; ').slice(0, 300)}`);
    }
    return { stored: spans - duplicates, duplicates };
  }

  private async postInHalves(chunk: ResourceSpans[], spans: number): Promise<ExportResult> {
    const [a = [], b = []] = chunkResourceSpans(chunk, Math.ceil(spans / 2));
    const [ra, rb] = [await this.post(a), await this.post(b)];
    return { stored: ra.stored + rb.stored, duplicates: ra.duplicates + rb.duplicates };
  }
}

/** LLMFlow's partialSuccess: how many spans it refused, and the reasons it lists ("; "-joined). */
function readPartialSuccess(text: string): { rejected: number; reasons: string[] } {
  let body: { partialSuccess?: { rejectedSpans?: number | string; errorMessage?: string } } = {};
  try {
    body = text ? JSON.parse(text) : {};
  } catch {
    // A 2xx with a body that is not JSON still means stored.
  }
  const rejected = Number(body.partialSuccess?.rejectedSpans ?? 0) || 0;
  const reasons = (body.partialSuccess?.errorMessage ?? '').split(/;\s*/).filter(Boolean);
  return { rejected, reasons };
}
