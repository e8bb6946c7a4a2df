/**
 * npm run bench: throughput and memory of each stage against the real peers.
 *
 *   receive vs the Collector: records/s of the bridge's ingest beside the Collector (otlp → debug,
 *            and otlp → a file_storage queue), each pinned to one core, same bodies, protobuf+gzip
 *            and JSON; Redis bytes per queued record against the gzip'd wire bytes (receive.ts).
 *   receive: distinct Claude Code batches (the two-tools capture, one prompt each) posted as
 *            protobuf to an ingest-only bridge, BENCH_CONCURRENCY at a time: requests/s,
 *            latency percentiles, peak RSS of the bridge.
 *   process+export: a worker-only bridge then drains that queue into LLMFlow: spans/s, peak RSS.
 *
 *   LLMFlow's ceiling: the same batches' spans posted to LLMFlow directly (export.ts);
 *   latency at half that ceiling: from the receiver's 200 to the batch's first span in LLMFlow;
 *   scale-out: one worker, then two, into a stub sink that answers at once (export.ts).
 *
 *   turns/s into LLMFlow: the same turns drained with rows folded (default) and with every event
 *            a row (BRIDGE_EVENT_ROWS=each), beside LLMFlow's ceiling in turns/s (turns.ts);
 *   turn latency: from the 200 for a turn's last event to its root readable in LLMFlow, beside
 *            LLMFlow's own time for a root posted to it directly (turn-latency.ts).
 *
 *   worker cost (issue 23): the baseline commit's worker (BENCH_BASELINE, 3e660a1 by default, built
 *            beside this checkout) and this one's, each on its own fresh Redis, draining the same
 *            BENCH_WORKER_BATCHES (5,000) queued batches of a real Claude Code session with
 *            subagents and its metrics into a stub: spans per worker CPU-second, Redis script calls
 *            and commands per batch, Redis CPU per span, peak RSS (worker-cost.ts).
 *
 * BENCH_TURNS (default 30), BENCH_BATCHES (default 500) and BENCH_CONCURRENCY (default 16) size the run.
 * BENCH_ONLY=process runs the receive and process+export stages and LLMFlow's ceiling alone (the
 * process + export ratio); BENCH_ONLY=memory the receive and process+export stages alone (their peak RSS is the memory
 * figure); BENCH_ONLY=worker-cost the worker cost alone; BENCH_SELF_EXPORT=1 has those bridges export their own traces and metrics over OTLP
 * (OTEL_* variables, to a sink that answers at once), to measure what that costs.
 */
import os from 'node:os';
import { pointsIn } from '@ccbridge/metrics';
import { METRICS_QUEUE_NAME, NAMESPACE, QUEUE_NAME, queueKey } from '@ccbridge/redis';
import { Redis } from 'ioredis';
import { expectedSpans, logsOf } from '../support/fixtures';
import {
  peakRssMiB,
  post,
  startBridge,
  startLlmflow,
  startOkSink,
  startRedis,
  waitFor,
  type BridgePeer,
  type LlmflowPeer,
} from '../support/peers';
import { measureTurnLatency } from './turn-latency';
import { measureReceive } from './receive';
import { latencyAtHalfCeiling, llmflowCeiling, scaleOut } from './export';
import { batch, measureTurns, metricsBatch, metricsTemplate } from './turns';
import { measureWorkerCost } from './worker-cost';
import type { ExportLogsRequest } from '@ccbridge/otlp';

// LLMFlow keeps 10,000 spans by default (MAX_TRACES): the run stays below that.
const BATCHES = Number(process.env.BENCH_BATCHES ?? 500);
const CONCURRENCY = Number(process.env.BENCH_CONCURRENCY ?? 16);
const ONLY_MEMORY = process.env.BENCH_ONLY === 'memory';
const ONLY_PROCESS = process.env.BENCH_ONLY === 'process';
const ONLY_WORKER_COST = process.env.BENCH_ONLY === 'worker-cost';
// Metrics flow beside the events, as Claude Code sends them: each turn's process also posts its
// metrics request (a `claude -p` process sends one of each at exit), forwarded to LLMFlow's
// /v1/metrics through their own queue. BENCH_METRICS=0 leaves them out.
const METRICS = process.env.BENCH_METRICS !== '0';

/** Progress, on stderr: the figures stay alone on stdout, one JSON line each. */
const progress = (what: string) => process.stderr.write(`bench: ${what}\n`);

async function main() {
  if (ONLY_WORKER_COST) return workerCost();
  if (!ONLY_MEMORY && !ONLY_PROCESS) await againstPeers();
  const [redis, llmflow] = await Promise.all([startRedis(), startLlmflow()]);
  const sink = process.env.BENCH_SELF_EXPORT ? await startOkSink() : undefined;
  const selfExport: Record<string, string> = sink
    ? { OTEL_TRACES_EXPORTER: 'otlp', OTEL_METRICS_EXPORTER: 'otlp', OTEL_EXPORTER_OTLP_ENDPOINT: sink.url }
    : {};
  const template = logsOf('protobuf', 'two-tools');
  const bodies = Array.from({ length: BATCHES }, (_, i) => batch(template, i));
  const metrics = METRICS ? Array.from({ length: BATCHES }, (_, i) => metricsBatch(metricsTemplate(), i)) : [];
  const common = {
    REDIS_URL: redis.url,
    LLMFLOW_URL: llmflow.url,
    LOG_LEVEL: 'warn',
    BRIDGE_QUEUE_MAX_WAITING: String(BATCHES * 2),
    ...selfExport,
  };
  progress(
    `receive, then process + export, ${BATCHES} batches${METRICS ? ' and their metrics' : ''}${sink ? ', exporting their own telemetry' : ''}`,
  );
  const ingest = await startBridge({ ...common, BRIDGE_ROLE: 'ingest' });
  try {
    const spansPerSecond = await receiveThenProcess(ingest, { bodies, metrics }, common, llmflow, redis.url);
    if (!ONLY_MEMORY) await exportFigures(bodies, metrics, template, spansPerSecond);
  } finally {
    await ingest.stop();
    await Promise.all([llmflow.stop(), redis.stop(), sink?.close()]);
  }
  if (!ONLY_MEMORY && !ONLY_PROCESS) await workerCost();
}

/** The baseline's worker and this checkout's on the same load (worker-cost.ts). */
async function workerCost() {
  progress('worker cost, the baseline beside this checkout (about 6 min with 5,000 batches)');
  console.log(JSON.stringify(await measureWorkerCost()));
}

/** The receive stage beside the Collector, and a turn's latency beside LLMFlow's. */
async function againstPeers() {
  progress('receive beside the Collector (about 30 s)');
  for (const r of await measureReceive()) {
    const ratio = (a: number, b: number) => Math.round((a / b) * 100) / 100;
    console.log(
      JSON.stringify({
        stage: 'receive vs the Collector (records/s, one core each)',
        ...r,
        ratioToCollectorDebug: ratio(r.bridge, r.collectorDebug),
        ratioToCollectorDurable: ratio(r.bridge, r.collectorDurable),
        ...(r.perCpuSecond.bridge &&
          r.perCpuSecond.collectorDebug && {
            perCpuSecondRatioToCollectorDebug: ratio(r.perCpuSecond.bridge, r.perCpuSecond.collectorDebug),
          }),
        ...(r.jsonParseOnly && { jsonParseOnlyRatioToCollectorDebug: ratio(r.jsonParseOnly, r.collectorDebug) }),
        ...(r.redisBytesPerRecord &&
          r.wireBytesPerRecord && { redisToWire: ratio(r.redisBytesPerRecord, r.wireBytesPerRecord) }),
        targets: { ratioToCollectorDebug: '>= 1.0', redisToWire: '<= 2' },
      }),
    );
  }
  progress(`turn latency (${process.env.BENCH_TURNS ?? 30} turns)`);
  const latency = await measureTurnLatency(Number(process.env.BENCH_TURNS ?? 30));
  console.log(
    JSON.stringify({
      stage: 'turn latency (last event accepted → root readable in LLMFlow)',
      ...latency,
      ratioP50: Math.round((latency.bridgeP50Ms / latency.llmflowP50Ms) * 10) / 10,
      targetMs: 1000,
    }),
  );
}

/**
 * Distinct batches (and their metrics) into an ingest-only bridge, then a worker-only bridge
 * drains them into LLMFlow: rates and peak RSS. With metrics, the rates count log batches only,
 * so they compare with runs without: the metrics' work is on top.
 */
async function receiveThenProcess(
  ingest: BridgePeer,
  { bodies, metrics }: { bodies: Uint8Array[]; metrics: Uint8Array[] },
  common: Record<string, string>,
  llmflow: LlmflowPeer,
  redisUrl: string,
): Promise<number> {
  const latencies: number[] = [];
  let next = 0;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (next < bodies.length) {
        const i = next++;
        const t0 = performance.now();
        const r = await post(`${ingest.url}/v1/logs`, bodies[i]!, 'application/x-protobuf');
        if (r.status !== 200) throw new Error(`ingest answered ${r.status}`);
        latencies.push(performance.now() - t0);
        if (!metrics[i]) continue;
        const m = await post(`${ingest.url}/v1/metrics`, metrics[i], 'application/x-protobuf');
        if (m.status !== 200) throw new Error(`ingest answered ${m.status} to metrics`);
      }
    }),
  );
  const seconds = (performance.now() - started) / 1000;
  latencies.sort((a, b) => a - b);
  const pct = (p: number) => latencies[Math.min(latencies.length - 1, Math.floor(latencies.length * p))]!.toFixed(2);
  console.log(
    JSON.stringify({
      stage: 'receive',
      batches: BATCHES,
      metricsRequests: metrics.length,
      concurrency: CONCURRENCY,
      requestsPerSecond: Math.round(BATCHES / seconds),
      p50Ms: pct(0.5),
      p99Ms: pct(0.99),
      peakRssMiB: peakRssMiB(ingest.child.pid).toFixed(1),
    }),
  );

  const perBatch = expectedSpans('protobuf', 'two-tools').total;
  const worker = await startBridge({ ...common, BRIDGE_ROLE: 'worker' });
  const client = new Redis(redisUrl);
  try {
    const t1 = performance.now();
    const waiting = async (queue: string) =>
      (await client.llen(queueKey('wait', NAMESPACE, queue))) +
      (await client.llen(queueKey('active', NAMESPACE, queue)));
    await waitFor(
      'the queues to drain',
      async () => (await waiting(QUEUE_NAME)) + (await waiting(METRICS_QUEUE_NAME)) === 0,
      600_000,
    );
    await waitFor('every span in LLMFlow', async () => (await llmflow.listed()).length >= BATCHES * perBatch, 600_000);
    const points = metrics.length ? pointsIn(metricsTemplate()) * metrics.length : 0;
    if (points)
      await waitFor(
        'every metric point in LLMFlow',
        async () => (await llmflow.metricRows()).length >= points,
        600_000,
        500,
      );
    const drain = (performance.now() - t1) / 1000;
    const spansPerSecond = Math.round((BATCHES * perBatch) / drain);
    console.log(
      JSON.stringify({
        stage: 'process+export',
        batches: BATCHES,
        spans: BATCHES * perBatch,
        metricPoints: points,
        spansPerSecond,
        seconds: drain.toFixed(1),
        peakRssMiB: peakRssMiB(worker.child.pid).toFixed(1),
      }),
    );
    return spansPerSecond;
  } finally {
    client.disconnect();
    await worker.stop();
  }
}

/** LLMFlow's own ceiling beside the bridge's rate, latency at half of it, and scale-out. */
async function exportFigures(
  bodies: Uint8Array[],
  metrics: Uint8Array[],
  template: ExportLogsRequest,
  spansPerSecond: number,
) {
  const perBatch = expectedSpans('protobuf', 'two-tools').total;
  progress("LLMFlow's own ceiling");
  // With the same metrics posted beside the spans, as the bridge's drain had them to forward.
  const ceiling = await llmflowCeiling(bodies, metrics);
  // Compared per batch: the same 500 batches either way (the bridge also draws each root).
  const ceilingBatchesPerSecond = ceiling.spansPerSecond / (ceiling.spans / BATCHES);
  // The ratio the issue asks for: spans/s into LLMFlow, the bridge's (its roots included) against
  // LLMFlow's own with the same child spans posted directly. Per batch it is stricter (the
  // bridge also has each batch's root stored, about 1/15 more for LLMFlow): shown beside it.
  const r2 = (x: number) => Math.round(x * 100) / 100;
  console.log(
    JSON.stringify({
      stage:
        "LLMFlow's own ceiling (the same batches' child spans and metrics posted directly, 4 at a time, one batch per request or 512 spans per request: the faster)",
      ...ceiling,
      bridgeSpansPerSecond: spansPerSecond,
      ratio: r2(spansPerSecond / ceiling.spansPerSecond),
      batchesPerSecond: Math.round(ceilingBatchesPerSecond),
      bridgeBatchesPerSecond: Math.round(spansPerSecond / perBatch),
      perBatchRatio: r2(spansPerSecond / perBatch / ceilingBatchesPerSecond),
      target: '>= 0.9',
    }),
  );
  if (ONLY_PROCESS) return;
  progress("200 to LLMFlow at half of LLMFlow's ceiling (about 10 s)");
  const paced = await latencyAtHalfCeiling(bodies, ceiling.spansPerSecond);
  console.log(
    JSON.stringify({
      stage: "latency, the receiver's 200 → the batch's first span in LLMFlow, at half its ceiling",
      ...paced,
      targetP99Ms: 1000,
    }),
  );
  progress(`turns/s into LLMFlow, rows folded and every event a row (${BATCHES} turns each way)`);
  console.log(JSON.stringify(await measureTurns(BATCHES)));
  progress('one worker, then two, into a stub sink');
  // Four times the batches: the stub keeps nothing, and a longer drain leaves the workers'
  // warm-up (JIT) a smaller share of what is measured.
  const scale = await scaleOut(Array.from({ length: BATCHES * 4 }, (_, i) => batch(template, i)));
  const { one, two } = scale;
  console.log(
    JSON.stringify({
      stage: 'scale-out into a stub sink (spans/s)',
      oneWorker: one.spansPerSecond,
      twoWorkers: two.spansPerSecond,
      ratio: r2(two.spansPerSecond / one.spansPerSecond),
      cores: os.availableParallelism(),
      // Spans per CPU-second of the workers: equal for one and two when nothing they share (Redis,
      // the queue's locks) makes each worker do more per span; two workers then take twice what
      // one takes wherever each has a core of its own (with Redis and the sink elsewhere).
      perCpuSecond: { oneWorker: one.spansPerCpuSecond, twoWorkers: two.spansPerCpuSecond },
      ...(one.spansPerCpuSecond &&
        two.spansPerCpuSecond && { twoWorkersWithACoreEach: r2((2 * two.spansPerCpuSecond) / one.spansPerCpuSecond) }),
      target: '>= 1.8',
    }),
  );
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
