/**
 * The process stage for tests: processBatch and the closer over a real Redis, with spans
 * collected in memory instead of sent to LLMFlow. Each harness gets its own key prefix.
 */
import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { InteractionCloser, InteractionStore, processBatch, type BatchProcessorDeps } from '@ccbridge/claude-events';
import { silentLogger } from '@ccbridge/log';
import { attributesToRecord, type AttributeValue, type ExportLogsRequest, type LogRecord, type ResourceSpans, type Span } from '@ccbridge/otlp';

export interface CollectedSpan extends Span {
  attrs: Record<string, AttributeValue>;
}

export class Harness {
  readonly exported: CollectedSpan[] = [];
  readonly deps: BatchProcessorDeps;
  readonly closer: InteractionCloser;
  private readonly redis: Redis;
  private readonly prefix: string;

  constructor(redisUrl: string, options: Partial<BatchProcessorDeps> & { idleMs?: number; prefix?: string } = {}) {
    this.redis = new Redis(redisUrl, { maxRetriesPerRequest: null });
    this.prefix = options.prefix ?? `test-${randomUUID()}`;
    const store = new InteractionStore(this.redis, { prefix: this.prefix, idleMs: options.idleMs ?? 600_000 });
    this.deps = {
      store,
      log: silentLogger,
      exportSpans: async (rs: ResourceSpans[]) => {
        for (const r of rs) for (const ss of r.scopeSpans ?? []) for (const s of ss.spans ?? []) this.exported.push({ ...s, attrs: attributesToRecord(s.attributes) });
        return { refused: [] };
      },
      ...options,
    };
    this.closer = new InteractionCloser(this.deps);
  }

  /** Another worker on the same Redis and prefix, exporting into the same list. */
  sibling(): Harness {
    const h = Object.create(Harness.prototype) as Harness;
    Object.assign(h, { exported: this.exported, deps: this.deps, redis: this.redis, prefix: this.prefix, closer: new InteractionCloser(this.deps) });
    return h;
  }

  process(request: ExportLogsRequest) {
    return processBatch(this.deps, 'logs', request);
  }

  /** When each open interaction is due to close (ms), as the store holds it. */
  async dueTimes(): Promise<number[]> {
    const flat = await this.redis.zrange(`${this.prefix}:due`, 0, -1, 'WITHSCORES');
    return flat.filter((_, i) => i % 2 === 1).map(Number);
  }

  closeAll() {
    return this.closer.closeDue(true);
  }

  /** What a store that keeps one copy per span id (LLMFlow) would hold; throws if a repeat differs. */
  stored(): Map<string, CollectedSpan> {
    const byId = new Map<string, CollectedSpan>();
    for (const s of this.exported) {
      const seen = byId.get(s.spanId);
      if (seen && JSON.stringify(seen) !== JSON.stringify(s)) throw new Error(`span ${s.spanId} (${s.name}) was sent twice with different content`);
      byId.set(s.spanId, s);
    }
    return byId;
  }

  disconnect() {
    this.redis.disconnect();
  }
}

/** The log records of a single-resource, single-scope request (as the captures are). */
export const recordsOf = (request: ExportLogsRequest): LogRecord[] => request.resourceLogs![0]!.scopeLogs![0]!.logRecords!;

/** A logs request holding the given records under one resource and scope. */
export function requestOf(template: ExportLogsRequest, records: LogRecord[]): ExportLogsRequest {
  const rl = template.resourceLogs![0]!;
  return { resourceLogs: [{ resource: rl.resource, scopeLogs: [{ scope: rl.scopeLogs![0]!.scope, logRecords: records }] }] };
}

/** A small seeded PRNG (mulberry32), so a failing case can be replayed from its seed. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** The tree as comparable data: per span, its name, parent, times, status and attributes. */
export function treeOf(spans: Iterable<CollectedSpan>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const s of spans) {
    out[s.spanId] = {
      trace: s.traceId, name: s.name, parent: s.parentSpanId ?? null, start: s.startTimeUnixNano, end: s.endTimeUnixNano,
      status: s.status ?? null, attrs: s.attrs, events: (s.events ?? []).map((e) => `${e.timeUnixNano} ${e.name}`).sort(),
    };
  }
  return out;
}
