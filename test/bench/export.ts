/**
 * The export side's peers, in the same run:
 * - LLMFlow's own ceiling: the spans the bridge would draw for the same batches (planned by the
 *   bridge's own code), posted straight to a fresh LLMFlow's /v1/traces, as many requests at
 *   once as a worker makes (BRIDGE_WORKER_CONCURRENCY, 4), one batch per request and in requests
 *   of up to 512 spans: spans/s, the faster way.
 * - scale-out: a queue of the same batches drained by one worker, then by two, into a stub sink
 *   that answers 200 at once (so LLMFlow's own rate does not hide the bridge's): spans/s each.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Redis } from 'ioredis';
import { assignTurns, claudeEventsOf, planBatch } from '@ccbridge/claude-events';
import { pointsIn } from '@ccbridge/metrics';
import { decodeExportRequest, type ResourceSpans } from '@ccbridge/otlp';
import { queueKey } from '@ccbridge/redis';
import { post, startBridge, startLlmflow, startRedis, waitFor } from '../support/peers';
import { cpuSeconds } from './cpu';

const WORKER_CONCURRENCY = 4;

/** The child spans the bridge draws for each batch, as it would post them. */
function plannedSpans(bodies: Uint8Array[]): ResourceSpans[][] {
  return bodies.map((b) => {
    const { events } = claudeEventsOf(decodeExportRequest('logs', b, 'protobuf'));
    return planBatch(events, assignTurns(events, new Map())).resourceSpans;
  });
}

const spanCount = (rs: ResourceSpans[]) =>
  rs.reduce((n, r) => n + (r.scopeSpans ?? []).reduce((m, s) => m + (s.spans?.length ?? 0), 0), 0);

/** The bridge's default most spans in one request to LLMFlow (BRIDGE_EXPORT_MAX_SPANS). */
const MAX_SPANS_PER_REQUEST = 512;

/** One request to LLMFlow: where, and its OTLP/JSON body. */
type Post = { path: '/v1/traces' | '/v1/metrics'; body: Buffer };

/** Posts the list in order, WORKER_CONCURRENCY at a time, to a fresh LLMFlow; the seconds until it holds it all. */
async function timeInto(posts: Post[], spans: number, metricPoints: number): Promise<number> {
  const llmflow = await startLlmflow();
  try {
    let next = 0;
    const t0 = performance.now();
    await Promise.all(
      Array.from({ length: WORKER_CONCURRENCY }, async () => {
        while (next < posts.length) {
          const { path, body } = posts[next++]!;
          const r = await post(`${llmflow.url}${path}`, body, 'application/json');
          if (r.status !== 200) throw new Error(`LLMFlow answered ${r.status} on ${path}`);
        }
      }),
    );
    await waitFor('every span in LLMFlow', async () => (await llmflow.listed()).length >= spans, 600_000);
    if (metricPoints)
      await waitFor(
        'every metric point in LLMFlow',
        async () => (await llmflow.metricRows()).length >= metricPoints,
        600_000,
        500,
      );
    return (performance.now() - t0) / 1000;
  } finally {
    await llmflow.stop();
  }
}

/**
 * LLMFlow's own ceiling: the spans the bridge draws for the batches posted to it directly, the
 * faster of two ways (one request per batch; requests of up to 512 spans, as the bridge may
 * send several batches' spans at once), spans/s. With `metrics` (protobuf requests, one per
 * batch), each batch's metrics are posted after its spans, as the bridge forwards them
 * (OTLP/JSON), and the time runs until LLMFlow holds every point as well.
 */
export async function llmflowCeiling(
  bodies: Uint8Array[],
  metrics: Uint8Array[] = [],
): Promise<{ spans: number; spansPerSecond: number; perBatchSpansPerSecond: number; metricPoints: number }> {
  const planned = plannedSpans(bodies);
  const spans = planned.reduce((n, r) => n + spanCount(r), 0);
  const metricRequests = metrics.map((m) => decodeExportRequest('metrics', m, 'protobuf'));
  const metricPoints = metricRequests.reduce((n, m) => n + pointsIn(m), 0);
  const json = (x: unknown) => Buffer.from(JSON.stringify(x));
  const metricsOf = (i: number): Post[] =>
    metricRequests[i] ? [{ path: '/v1/metrics', body: json(metricRequests[i]) }] : [];

  const perBatch: Post[] = planned.flatMap((rs, i) => [
    { path: '/v1/traces' as const, body: json({ resourceSpans: rs }) },
    ...metricsOf(i),
  ]);
  const grouped: Post[] = [];
  for (let i = 0; i < planned.length;) {
    const group: ResourceSpans[] = [];
    const first = i;
    for (let n = 0; i < planned.length && n + spanCount(planned[i]!) <= MAX_SPANS_PER_REQUEST; i++) {
      n += spanCount(planned[i]!);
      group.push(...planned[i]!);
    }
    if (i === first) group.push(...planned[i++]!); // one batch larger than a request: alone
    grouped.push({ path: '/v1/traces', body: json({ resourceSpans: group }) });
    for (let k = first; k < i; k++) grouped.push(...metricsOf(k));
  }
  const perBatchRate = spans / (await timeInto(perBatch, spans, metricPoints));
  const groupedRate = spans / (await timeInto(grouped, spans, metricPoints));
  return {
    spans,
    spansPerSecond: Math.round(Math.max(perBatchRate, groupedRate)),
    perBatchSpansPerSecond: Math.round(perBatchRate),
    metricPoints,
  };
}

const SPAN_ID_KEY = Buffer.from('"spanId":');

function occurrences(haystack: Buffer, needle: Buffer, ids?: Set<string>): number {
  let n = 0;
  for (let at = haystack.indexOf(needle); at !== -1; at = haystack.indexOf(needle, at + needle.length)) {
    n += 1;
    if (!ids) continue;
    // The id itself: the string after the key (`"spanId":"…"`), a span sent again counted once.
    const start = haystack.indexOf(0x22, at + needle.length) + 1;
    ids.add(haystack.toString('latin1', start, haystack.indexOf(0x22, start)));
  }
  return n;
}

/** A stand-in for LLMFlow that takes every request at once, counting the spans. */
export async function stubLlmflow(): Promise<{
  url: string;
  spans: () => number;
  /** Distinct span ids among them: a span sent more than once (the same id again) counts once. */
  distinctSpans: () => number;
  seconds: () => number;
  close: () => Promise<void>;
}> {
  let spans = 0;
  const ids = new Set<string>();
  let first = 0;
  let last = 0;
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      last = performance.now();
      if (first === 0) first = last;
      // Spans counted by their "spanId" keys, not by parsing: the stub shares the machine's cores
      // with the workers it measures, and should take as little of them as it can.
      spans += occurrences(Buffer.concat(chunks), SPAN_ID_KEY, ids);
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end('{}');
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    spans: () => spans,
    distinctSpans: () => ids.size,
    seconds: () => (last - first) / 1000,
    close: () => new Promise((r) => server.close(() => r())),
  };
}

export interface Drain {
  spansPerSecond: number;
  /** Spans per CPU-second of the workers together: what a span costs, whatever the cores allow. */
  spansPerCpuSecond?: number;
}

/** Spans/s `workers` worker processes drive from a full queue into the stub (first request to last: start-up left out). */
async function drainWith(workers: number, bodies: Uint8Array[]): Promise<Drain> {
  const [redis, stub] = await Promise.all([startRedis(), stubLlmflow()]);
  const common = {
    REDIS_URL: redis.url,
    LLMFLOW_URL: stub.url,
    LOG_LEVEL: 'warn',
    BRIDGE_QUEUE_MAX_WAITING: String(bodies.length * 2),
  };
  const client = new Redis(redis.url);
  try {
    const ingest = await startBridge({ ...common, BRIDGE_ROLE: 'ingest' });
    try {
      for (const b of bodies) {
        const r = await post(`${ingest.url}/v1/logs`, b, 'application/x-protobuf');
        if (r.status !== 200) throw new Error(`ingest answered ${r.status}`);
      }
    } finally {
      await ingest.stop();
    }
    const want = plannedSpans(bodies).reduce((n, r) => n + spanCount(r), 0);
    const started = await Promise.all(
      Array.from({ length: workers }, () => startBridge({ ...common, BRIDGE_ROLE: 'worker' })),
    );
    const cpu = () => started.reduce((sum, w) => sum + (cpuSeconds(w.child.pid) ?? NaN), 0);
    // Their start-up is left out: a ready worker has taken its first jobs by now, but little CPU.
    const cpu0 = cpu();
    try {
      await waitFor(
        'the queue to drain',
        async () =>
          (await client.llen(queueKey('wait'))) + (await client.llen(queueKey('active'))) === 0 && stub.spans() >= want,
        600_000,
        20,
      );
      const used = cpu() - cpu0;
      return {
        spansPerSecond: Math.round(stub.spans() / stub.seconds()),
        ...(used > 0 && { spansPerCpuSecond: Math.round(stub.spans() / used) }),
      };
    } finally {
      await Promise.all(started.map((w) => w.stop()));
    }
  } finally {
    client.disconnect();
    await Promise.all([redis.stop(), stub.close()]);
  }
}

export async function scaleOut(bodies: Uint8Array[]): Promise<{ one: Drain; two: Drain }> {
  const one = await drainWith(1, bodies);
  const two = await drainWith(2, bodies);
  return { one, two };
}

/**
 * From the receiver's 200 to the batch's first span readable in LLMFlow, p50 and p99, with
 * batches sent at half of LLMFlow's own ceiling (`ceilingSpansPerSecond`) for `seconds`.
 */
export async function latencyAtHalfCeiling(
  bodies: Uint8Array[],
  ceilingSpansPerSecond: number,
  seconds = 10,
): Promise<{ batchesPerSecond: number; p50Ms: number; p99Ms: number; batches: number }> {
  const planned = plannedSpans(bodies);
  const perBatch = planned.reduce((n, r) => n + spanCount(r), 0) / planned.length;
  const batchesPerSecond = Math.max(1, ceilingSpansPerSecond / 2 / perBatch);
  const [redis, llmflow] = await Promise.all([startRedis(), startLlmflow()]);
  const bridge = await startBridge({
    REDIS_URL: redis.url,
    LLMFLOW_URL: llmflow.url,
    LOG_LEVEL: 'warn',
    BRIDGE_QUEUE_MAX_WAITING: String(bodies.length * 2),
  });
  const latencies: number[] = [];
  try {
    const count = Math.min(bodies.length, Math.round(batchesPerSecond * seconds));
    const t0 = performance.now();
    await Promise.all(
      Array.from({ length: count }, async (_, i) => {
        // Paced: batch i leaves at i / rate seconds.
        await new Promise((r) => setTimeout(r, Math.max(0, t0 + (i * 1000) / batchesPerSecond - performance.now())));
        const spanId = planned[i]![0]!.scopeSpans![0]!.spans![0]!.spanId;
        const r = await post(`${bridge.url}/v1/logs`, bodies[i]!, 'application/x-protobuf');
        if (r.status !== 200) throw new Error(`the bridge answered ${r.status}`);
        const accepted = performance.now();
        await waitFor(
          `span ${spanId} in LLMFlow`,
          async () => (await fetch(`${llmflow.url}/api/traces/${spanId}`)).ok || undefined,
          60_000,
          5,
        );
        latencies.push(performance.now() - accepted);
      }),
    );
  } finally {
    await bridge.stop();
    await Promise.all([llmflow.stop(), redis.stop()]);
  }
  latencies.sort((a, b) => a - b);
  const pct = (p: number) =>
    Math.round(latencies[Math.min(latencies.length - 1, Math.floor(latencies.length * p))]! * 10) / 10;
  return {
    batchesPerSecond: Math.round(batchesPerSecond * 10) / 10,
    p50Ms: pct(0.5),
    p99Ms: pct(0.99),
    batches: latencies.length,
  };
}
