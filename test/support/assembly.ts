/**
 * The process stage for tests: processBatch, the lifecycle store and the closer over a real
 * Redis (single or cluster), with spans collected in memory instead of sent to LLMFlow, and a
 * clock the test moves. Each harness gets its own key namespace.
 */
import { randomUUID } from 'node:crypto';
import {
  TurnCloser,
  LifecycleStore,
  processBatch,
  type BatchProcessorDeps,
  type Clock,
  type LifecycleConfig,
} from '@ccbridge/claude-events';
import { ROOT_RETRY_MS } from '@ccbridge/errors';
import { silentLogger } from '@ccbridge/log';
import { connectRedis, type RedisClient } from '@ccbridge/redis';
import {
  attributesToRecord,
  type AttributeValue,
  type ExportLogsRequest,
  type LogRecord,
  type ResourceSpans,
  type Span,
} from '@ccbridge/otlp';

export interface CollectedSpan extends Span {
  attrs: Record<string, AttributeValue>;
}

/** A clock that moves only when told to. */
export class ManualClock implements Clock {
  constructor(private ms = Date.UTC(2026, 10, 24)) {}
  now(): number {
    return this.ms;
  }
  advance(ms: number): void {
    this.ms += ms;
  }
}

export interface HarnessOptions {
  config?: Partial<LifecycleConfig>;
  /** When the oldest queued batch was received, as the worker's closer would be told. */
  backlogSinceMs?: () => Promise<number | undefined>;
  exportSpans?: BatchProcessorDeps['exportSpans'];
  nativeTraces?: BatchProcessorDeps['nativeTraces'];
  eventRows?: BatchProcessorDeps['eventRows'];
  redactor?: BatchProcessorDeps['redactor'];
}

/** Where the harness's Redis is. */
export interface RedisAt {
  url: string;
  cluster?: boolean;
}

export class Harness {
  readonly exported: CollectedSpan[];
  readonly clock: ManualClock;
  readonly store: LifecycleStore;
  readonly closer: TurnCloser;
  readonly deps: BatchProcessorDeps;
  private readonly redis: RedisClient;

  constructor(
    readonly at: RedisAt,
    readonly options: HarnessOptions = {},
    shared?: { namespace: string; exported: CollectedSpan[]; clock: ManualClock },
  ) {
    // Each harness has its own connection: a sibling is another worker, not another handle on one client.
    this.redis = connectRedis(at, 'consumer');
    this.exported = shared?.exported ?? [];
    this.clock = shared?.clock ?? new ManualClock();
    this.namespace = shared?.namespace ?? `test-${randomUUID()}`;
    this.store = new LifecycleStore(this.redis, {
      namespace: this.namespace,
      config: options.config,
      clock: this.clock,
    });
    const exportSpans =
      options.exportSpans ??
      (async (rs: ResourceSpans[]) => {
        for (const r of rs)
          for (const ss of r.scopeSpans ?? [])
            for (const s of ss.spans ?? []) this.exported.push({ ...s, attrs: attributesToRecord(s.attributes) });
      });
    this.closer = new TurnCloser({
      store: this.store,
      exportSpans,
      log: silentLogger,
      retryDelayMs: ROOT_RETRY_MS,
      backlogSinceMs: options.backlogSinceMs,
    });
    this.deps = {
      store: this.store,
      closer: this.closer,
      exportSpans,
      log: silentLogger,
      nativeTraces: options.nativeTraces,
      eventRows: options.eventRows,
      redactor: options.redactor,
    };
  }

  readonly namespace: string;

  /** Another worker: its own Redis connection, the same namespace, clock and exported list. */
  sibling(): Harness {
    return new Harness(this.at, this.options, {
      namespace: this.namespace,
      exported: this.exported,
      clock: this.clock,
    });
  }

  /** Processes a batch as the worker does; `batch` is its job's id (a retry gives the same). */
  process(request: ExportLogsRequest, batch?: string) {
    return processBatch(this.deps, 'logs', request, batch);
  }

  /** A closer round over every shard at the clock's time, as the worker's timer runs it. */
  tick(): Promise<number> {
    return this.closer.closeDue();
  }

  /** Moves the clock on, then runs a closer round. */
  async advance(ms: number): Promise<number> {
    this.clock.advance(ms);
    return this.tick();
  }

  roots(): CollectedSpan[] {
    return [...this.stored().values()].filter((s) => !s.parentSpanId);
  }

  /** What a store that keeps one copy per span id (LLMFlow) would hold; throws if a repeat differs. */
  stored(): Map<string, CollectedSpan> {
    const byId = new Map<string, CollectedSpan>();
    for (const s of this.exported) {
      const seen = byId.get(s.spanId);
      if (seen && JSON.stringify(seen) !== JSON.stringify(s))
        throw new Error(`span ${s.spanId} (${s.name}) was sent twice with different content`);
      byId.set(s.spanId, s);
    }
    return byId;
  }

  disconnect() {
    this.redis.disconnect();
  }
}

/** The log records of a single-resource, single-scope request (as the captures are). */
export const recordsOf = (request: ExportLogsRequest): LogRecord[] =>
  request.resourceLogs![0]!.scopeLogs![0]!.logRecords!;

/** A logs request holding the given records under one resource and scope. */
export function requestOf(template: ExportLogsRequest, records: LogRecord[]): ExportLogsRequest {
  const rl = template.resourceLogs![0]!;
  return {
    resourceLogs: [{ resource: rl.resource, scopeLogs: [{ scope: rl.scopeLogs![0]!.scope, logRecords: records }] }],
  };
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

/** A Fisher-Yates shuffle driven by one generator (a random sort comparator does not shuffle fairly). */
export function shuffle<T>(items: readonly T[], random: () => number): T[] {
  const out = [...items];
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}

/** The tree as comparable data: per span, its name, parent, times, status and attributes. */
export function treeOf(spans: Iterable<CollectedSpan>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const s of spans) {
    out[s.spanId] = {
      trace: s.traceId,
      name: s.name,
      parent: s.parentSpanId ?? null,
      start: s.startTimeUnixNano,
      end: s.endTimeUnixNano,
      status: s.status ?? null,
      attrs: s.attrs,
      events: (s.events ?? []).map((e) => `${e.timeUnixNano} ${e.name}`).sort(),
    };
  }
  return out;
}
