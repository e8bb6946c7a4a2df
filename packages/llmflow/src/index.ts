/**
 * The export stage: posts spans to LLMFlow's `POST /v1/traces` as OTLP/HTTP JSON, the only
 * encoding LLMFlow takes.
 *
 * Written on fetch rather than @opentelemetry/exporter-trace-otlp-http because the bridge must
 * read what LLMFlow answers: LLMFlow refuses a span id it already stores through
 * `partialSuccess` ("UNIQUE constraint failed"), which for a bridge that derives ids and may
 * deliver twice means "already stored", while the SDK exporter only logs partial success. And
 * the bridge forwards spans it holds as OTLP/JSON, not as SDK span objects.
 *
 * What can go wrong, and what the caller is told:
 * - LLMFlow cannot take anything now (no answer, timeout, 408/429/5xx, or 401/403/404/405,
 *   which mean a wrong LLMFLOW_URL): LlmflowUnavailableError, thrown at once; nothing is lost,
 *   the caller keeps the batch and tries again later.
 * - LLMFlow refuses particular spans (400/413/422 on a single span, or a partialSuccess
 *   rejection other than a duplicate): every other span is still delivered, and the refused
 *   ones are returned with LLMFlow's reason. A request refused as a whole is split in halves
 *   until the refused spans stand alone.
 */
import { countItems, type ResourceSpans } from '@ccbridge/otlp';
import type { Logger } from '@ccbridge/log';

export class LlmflowUnavailableError extends Error {
  override name = 'LlmflowUnavailableError';
}

export interface RefusedSpan {
  spanId: string;
  name: string;
  reason: string;
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
  log: Logger;
  headers?: Record<string, string>;
}

/** Statuses that say something about the spans sent, rather than about LLMFlow or the URL. */
const REFUSES_CONTENT = new Set([400, 413, 422]);
const DUPLICATE = /UNIQUE constraint failed/i;

const spansIn = (batch: ResourceSpans[]) => batch.flatMap((rs) => (rs.scopeSpans ?? []).flatMap((ss) => ss.spans ?? []));
const spanCount = (batch: ResourceSpans[]) => countItems('traces', { resourceSpans: batch });
const sum = (a: ExportResult, b: ExportResult): ExportResult => ({
  stored: a.stored + b.stored,
  duplicates: a.duplicates + b.duplicates,
  refused: [...a.refused, ...b.refused],
});

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

export class LlmflowExporter {
  private readonly endpoint: string;

  constructor(private readonly options: LlmflowExporterOptions) {
    this.endpoint = `${options.url.replace(/\/+$/, '')}/v1/traces`;
  }

  async export(resourceSpans: ResourceSpans[]): Promise<ExportResult> {
    let total: ExportResult = { stored: 0, duplicates: 0, refused: [] };
    for (const chunk of chunkResourceSpans(resourceSpans, this.options.maxSpansPerRequest)) {
      total = sum(total, await this.post(chunk));
    }
    if (total.duplicates > 0) this.options.log.debug({ duplicates: total.duplicates }, 'LLMFlow already held some spans');
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
      throw new LlmflowUnavailableError(`LLMFlow at ${this.endpoint} did not answer: ${(err as Error).message}`);
    }
    const text = await response.text().catch(() => '');
    if (REFUSES_CONTENT.has(response.status)) {
      if (spans > 1) return this.postInHalves(chunk, spans, `LLMFlow answered ${response.status}`);
      return { stored: 0, duplicates: 0, refused: this.refuse(chunk, `LLMFlow answered ${response.status}: ${text.slice(0, 300)}`) };
    }
    if (!response.ok) {
      throw new LlmflowUnavailableError(`LLMFlow at ${this.endpoint} answered ${response.status}: ${text.slice(0, 300)}`);
    }
    const refusal = readPartialSuccess(text);
    if (refusal.rejected === 0) return { stored: spans, duplicates: 0, refused: [] };
    const duplicates = refusal.reasons.filter((r) => DUPLICATE.test(r)).length;
    const explained = refusal.reasons.length >= refusal.rejected;
    if (explained && duplicates === refusal.rejected) return { stored: spans - duplicates, duplicates, refused: [] };
    if (spans > 1) {
      // LLMFlow lists only its first few reasons and never says which span each is about: send
      // again in halves until each refusal stands alone. What this request stored comes back
      // as duplicates there.
      const again = await this.postInHalves(chunk, spans, 'LLMFlow refused some spans');
      const storedNow = spans - refusal.rejected;
      return { ...again, stored: again.stored + storedNow, duplicates: again.duplicates - storedNow };
    }
    return { stored: 0, duplicates: 0, refused: this.refuse(chunk, refusal.reasons.join('; ') || 'refused without a reason') };
  }

  private async postInHalves(chunk: ResourceSpans[], spans: number, why: string): Promise<ExportResult> {
    this.options.log.debug({ spans, why }, 'splitting a request to LLMFlow');
    const [a = [], b = []] = chunkResourceSpans(chunk, Math.ceil(spans / 2));
    // Both halves go, whatever the first one met: one refused span must not hold back the rest.
    return sum(await this.post(a), await this.post(b));
  }

  private refuse(chunk: ResourceSpans[], reason: string): RefusedSpan[] {
    const refused = spansIn(chunk).map((s) => ({ spanId: s.spanId, name: s.name, reason }));
    this.options.log.error({ spans: refused.map((r) => `${r.name} ${r.spanId}`), reason }, 'LLMFlow refused spans');
    return refused;
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
