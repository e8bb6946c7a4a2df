/**
 * Claude Code's metrics as LLMFlow sums them: cumulative counters turned into deltas, counts
 * sent as integers, and requests of a bounded number of points. Pure functions over the
 * canonical OTLP/JSON form (@ccbridge/otlp); what a series' previous point was comes from
 * Redis (store.ts).
 */
import { createHash } from 'node:crypto';
import type { ExportMetricsRequest, KeyValue, ResourceMetrics } from '@ccbridge/otlp';

/** OTLP's aggregation temporality, as the canonical form writes it (enums as numbers). */
export const Temporality = { DELTA: 1, CUMULATIVE: 2 } as const;

/** A number data point of a sum or gauge, as the canonical form holds it. */
export interface NumberPoint {
  attributes?: KeyValue[];
  startTimeUnixNano?: string;
  timeUnixNano?: string;
  asDouble?: number;
  asInt?: string | number;
  [field: string]: unknown;
}

export interface Metric {
  name?: string;
  description?: string;
  unit?: string;
  sum?: { dataPoints?: NumberPoint[]; aggregationTemporality?: number; isMonotonic?: boolean };
  gauge?: { dataPoints?: NumberPoint[] };
  [kind: string]: unknown;
}

/** A cumulative point whose delta is asked for: its series, when, and its value. */
export interface CumulativePoint {
  series: string;
  timeUnixNano: string;
  value: string;
}

const isCumulativeCounter = (m: Metric) =>
  m.sum?.aggregationTemporality === Temporality.CUMULATIVE && m.sum.isMonotonic === true;
/** Data points a metric carries, whatever its kind. */
const pointsOf = (m: Metric) =>
  Object.values(m).reduce<number>((n, v) => n + ((v as { dataPoints?: unknown[] } | null)?.dataPoints?.length ?? 0), 0);

/** Data points a request carries, over all its metrics. */
export const pointsIn = (request: ExportMetricsRequest) =>
  (request.resourceMetrics ?? []).reduce(
    (n, rm) =>
      n +
      (rm.scopeMetrics ?? []).reduce(
        (k, sm) => k + (sm.metrics ?? []).reduce<number>((j, m) => j + pointsOf(m as Metric), 0),
        0,
      ),
    0,
  );
const valueOf = (p: NumberPoint) => (p.asInt !== undefined ? String(p.asInt) : String(p.asDouble ?? 0));

/** Attributes in a form that does not depend on their order. */
const canonical = (attrs: KeyValue[] | undefined) =>
  JSON.stringify(
    [...(attrs ?? [])].sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0)).map((a) => [a.key, a.value]),
  );

/**
 * A series' identity, per process: what the Collector's cumulativetodelta tells series by
 * (resource, scope, metric, point attributes) and the series' start time, which is the
 * exporting process's: two Claude Code processes whose attributes match (a session resumed
 * while it runs, or session.id left off) never read as one series that keeps restarting.
 */
function seriesId(resource: string, scope: string, m: Metric, p: NumberPoint): string {
  const identity = JSON.stringify([
    resource,
    scope,
    m.name,
    m.unit ?? '',
    canonical(p.attributes),
    p.startTimeUnixNano ?? '',
  ]);
  return createHash('sha256').update(identity).digest('hex').slice(0, 32);
}

/** The request's points of cumulative monotonic sums, in the request's order. */
export function cumulativePoints(request: ExportMetricsRequest): CumulativePoint[] {
  const out: CumulativePoint[] = [];
  for (const rm of request.resourceMetrics ?? []) {
    const resource = canonical(rm.resource?.attributes);
    for (const sm of rm.scopeMetrics ?? []) {
      const scope = JSON.stringify([sm.scope?.name ?? '', sm.scope?.version ?? '']);
      for (const m of (sm.metrics ?? []) as Metric[]) {
        if (!isCumulativeCounter(m)) continue;
        for (const p of m.sum!.dataPoints ?? [])
          out.push({ series: seriesId(resource, scope, m, p), timeUnixNano: p.timeUnixNano ?? '0', value: valueOf(p) });
      }
    }
  }
  return out;
}

/**
 * Units of counts (UCUM's `1`, an annotation such as `{request}`, none, or Claude Code's
 * `tokens` and `count`): their whole values go to LLMFlow as integers, since LLMFlow sums only
 * integer values (`/api/metrics/tokens`), and Claude Code sends every value as a double.
 */
const COUNTED = /^(|1|tokens?|count|\{[^}]*\})$/i;

/** A point as LLMFlow sums it: a whole count as an integer. */
function forLlmflow(m: Metric, p: NumberPoint): NumberPoint {
  if (p.asDouble === undefined || !Number.isInteger(p.asDouble) || !COUNTED.test(m.unit ?? '')) return p;
  const { asDouble, ...rest } = p;
  return { ...rest, asInt: String(asDouble) };
}

/**
 * A point of a cumulative series as a delta from `prev` (deltas.lua's entry): what came since
 * the series' previous point, starting at its time. The first point of a series counts whole
 * (it covers the series from its start); a value below the previous one means the counter was
 * reset, and counts whole too. Undefined for a stale point (already counted).
 */
export function deltaOf(p: NumberPoint, prev: string): NumberPoint | undefined {
  if (prev === '!') return undefined;
  if (prev === '') return p;
  const [prevTime = '0', prevValue = '0'] = prev.split(' ');
  const before = Number(prevValue);
  const now = Number(valueOf(p));
  if (now < before) return p;
  const delta = p.asInt !== undefined ? { asInt: String(Math.round(now - before)) } : { asDouble: now - before };
  const { asInt: _i, asDouble: _d, ...rest } = p;
  return { ...rest, ...delta, startTimeUnixNano: prevTime };
}

/** A metric of another kind (histogram, ...), its points' attributes redacted. */
function redactedKinds(m: Metric, redact: RedactAttributes): Metric {
  const out: Metric = { ...m };
  for (const [kind, data] of Object.entries(m)) {
    const points = (data as { dataPoints?: NumberPoint[] } | null)?.dataPoints;
    if (Array.isArray(points))
      out[kind] = {
        ...(data as object),
        dataPoints: points.map((p) => ({ ...p, attributes: redact(p.attributes) ?? [] })),
      };
  }
  return out;
}

export interface Converted {
  request: ExportMetricsRequest;
  points: number;
  /** Points left out: stale cumulative points, already counted. */
  stale: number;
}

/** The privacy switches (BRIDGE_PRIVACY_USER_IDS, ...), applied to a list of attributes. */
export type RedactAttributes = (attributes: KeyValue[] | undefined) => KeyValue[] | undefined;

/**
 * The request as LLMFlow takes it: cumulative counters as deltas (`prev`: deltas.lua's entries
 * for cumulativePoints(request), in its order), whole counts as integers, attributes redacted as
 * the privacy switches say (after the series were told apart, on what was sent). Other kinds
 * pass as they came.
 */
export function convertRequest(
  request: ExportMetricsRequest,
  prev: string[],
  redact: RedactAttributes = (a) => a,
): Converted {
  let next = 0;
  let points = 0;
  let stale = 0;
  const redacted = (p: NumberPoint): NumberPoint => {
    const attributes = redact(p.attributes);
    return attributes === p.attributes ? p : { ...p, attributes: attributes ?? [] };
  };
  const resourceMetrics = (request.resourceMetrics ?? []).map((rm) => ({
    ...rm,
    ...(rm.resource && { resource: { ...rm.resource, attributes: redact(rm.resource.attributes) ?? [] } }),
    scopeMetrics: (rm.scopeMetrics ?? []).map((sm) => ({
      ...sm,
      metrics: ((sm.metrics ?? []) as Metric[]).map((m) => {
        if (m.gauge) {
          const dataPoints = (m.gauge.dataPoints ?? []).map((p) => redacted(forLlmflow(m, p)));
          points += dataPoints.length;
          return { ...m, gauge: { ...m.gauge, dataPoints } };
        }
        if (!m.sum) {
          // Histograms and the rest: LLMFlow stores them as they are, attributes redacted.
          points += pointsOf(m);
          return redactedKinds(m, redact);
        }
        const cumulative = isCumulativeCounter(m);
        const dataPoints: NumberPoint[] = [];
        for (const p of m.sum.dataPoints ?? []) {
          const point = cumulative ? deltaOf(p, prev[next++] ?? '') : p;
          if (point) dataPoints.push(redacted(forLlmflow(m, point)));
          else stale += 1;
        }
        points += dataPoints.length;
        const sum = cumulative
          ? { ...m.sum, dataPoints, aggregationTemporality: Temporality.DELTA }
          : { ...m.sum, dataPoints };
        return { ...m, sum };
      }),
    })),
  }));
  return { request: { resourceMetrics }, points, stale };
}

/**
 * Splits a request into requests of at most `max` points, keeping resources, scopes and
 * metrics around them (a metric's points may be split over two). The same request always
 * splits the same way: a job tried again resumes after the requests LLMFlow already took.
 */
export function chunkRequest(
  request: ExportMetricsRequest,
  max: number,
): { request: ExportMetricsRequest; points: number }[] {
  const chunks: { request: ExportMetricsRequest; points: number }[] = [];
  let current: ResourceMetrics[] = [];
  let count = 0;
  const flush = () => {
    if (count > 0) chunks.push({ request: { resourceMetrics: current }, points: count });
    current = [];
    count = 0;
  };
  for (const rm of request.resourceMetrics ?? []) {
    for (const sm of rm.scopeMetrics ?? []) {
      for (const m of (sm.metrics ?? []) as Metric[]) {
        const kind = Object.keys(m).find((k) => Array.isArray((m[k] as { dataPoints?: unknown } | null)?.dataPoints));
        const all = kind ? (m[kind] as { dataPoints: unknown[] }).dataPoints : [];
        if (pointsOf(m) === 0) continue;
        for (let i = 0; i < all.length;) {
          if (count === max) flush();
          const take = all.slice(i, i + (max - count));
          current.push({
            ...rm,
            scopeMetrics: [{ ...sm, metrics: [{ ...m, [kind!]: { ...(m[kind!] as object), dataPoints: take } }] }],
          });
          count += take.length;
          i += take.length;
        }
      }
    }
  }
  flush();
  return chunks;
}
