/**
 * The worker: takes batches off the queue, turns Claude Code events into spans, sends them
 * to LLMFlow, and draws each turn's root when its events say it is over (the lifecycle, in
 * @ccbridge/claude-events). Wiring only; the work is in the packages.
 */
import type { BridgeConfig } from '@ccbridge/config';
import type { Logger } from '@ccbridge/log';
import { BatchConsumer, METRICS_QUEUE_NAME, type BatchConsumerOptions, type BatchHandler } from '@ccbridge/queue';
import { connectRedis, type RedisTarget } from '@ccbridge/redis';
import {
  TurnCloser,
  LifecycleStore,
  createRedactor,
  lifecycleConfigOf,
  processBatch,
  type BatchProcessorDeps,
} from '@ccbridge/claude-events';
import { DeadLetterStore } from '@ccbridge/dead-letter';
import { ROOT_RETRY_MS } from '@ccbridge/errors';
import {
  LLMFLOW_URL_HINT,
  LlmflowExporter,
  LlmflowMetricsClient,
  LlmflowUnavailableError,
  probeLlmflow,
} from '@ccbridge/llmflow';
import { MetricsStore, forwardMetrics, type ForwardDeps } from '@ccbridge/metrics';
import type { ExportMetricsRequest } from '@ccbridge/otlp';
import { LedgerStore, Reconciler, counterContributions, eventContributions } from '@ccbridge/sessions';
import { SpanKind, bridgeMetrics, inSpan, observeGauge } from '@ccbridge/telemetry';

export interface WorkerService {
  close(): Promise<void>;
}

/** How often the closer looks for timers that ran out (idle, turn timeout, gap wait, retries). */
const TIMER_TICK_MS = 1_000;

export function startWorker(config: BridgeConfig, target: RedisTarget, log: Logger): WorkerService {
  const redis = connectRedis(target, 'consumer');
  redis.on('error', (err: Error) => log.warn({ err: err.message }, 'redis connection error'));
  const exporter = new LlmflowExporter({
    url: config.llmflowUrl,
    timeoutMs: config.exportTimeoutMs,
    maxSpansPerRequest: config.exportMaxSpans,
    spanMaxBytes: config.spanMaxBytes,
    log: log.child({ component: 'llmflow' }),
  });
  const deadLetters = new DeadLetterStore(redis, {
    maxEntries: config.deadLetterMax,
    log: log.child({ component: 'dead-letter' }),
  });
  const store = new LifecycleStore(redis, { config: lifecycleConfigOf(config) });
  // Each session's api_request events against Claude Code's counters (only while metrics are forwarded: the counters come with them).
  const ledger = new LedgerStore(redis);
  const toLlmflow = deadLetters.exportThrough((spans) => exporter.export(spans));
  const exportSpans: BatchProcessorDeps['exportSpans'] = (spans, source) => toLlmflow(spans, source);
  // Timers wait for batches received before they ran out (the consumer is made below, before any timer runs).
  const closer = new TurnCloser({
    store,
    exportSpans,
    log,
    retryDelayMs: ROOT_RETRY_MS,
    backlogSinceMs: async () => consumer.backlogSinceMs(),
    // Each session's turns, as its roots say (ccbridge sessions): news left in their commit.
    ledger: config.forwardMetrics,
  });
  const redactor = createRedactor({
    prompts: config.privacyPrompts,
    toolDetails: config.privacyToolDetails,
    userIds: config.privacyUserIds,
  });
  const deps: BatchProcessorDeps = {
    store,
    closer,
    exportSpans,
    log,
    nativeTraces: config.nativeTraces,
    eventRows: config.eventRows,
    redactor,
    // The session's ledger counts its api_request events: news left as their batch is applied.
    ledgerNews: config.forwardMetrics ? eventContributions : undefined,
  };

  // Retries, pauses and the failed set are the queue's, as the policy says (@ccbridge/errors); the worker logs them.
  const consumerOptions = (what: string): BatchConsumerOptions => ({
    concurrency: config.workerConcurrency,
    onPause: (err, pauseMs) => {
      bridgeMetrics.pause();
      if (err instanceof LlmflowUnavailableError)
        log.warn(
          { err: err.message, pauseMs, hint: LLMFLOW_URL_HINT },
          `LLMFlow is unavailable; the ${what} wait in the queue`,
        );
      // Redis out of memory, say (@ccbridge/errors redis.ts).
      else log.warn({ err: err.message, pauseMs }, `the ${what} wait in the queue: ${err.name}`);
    },
    onFailed: (job, err, final) => {
      (final ? log.error.bind(log) : log.warn.bind(log))(
        { signal: job?.signal, items: job?.items, err: err.message, final },
        final ? 'gave up on a batch; it stays in the failed set' : 'a batch failed; it will be retried',
      );
    },
    onError: (err) => log.warn({ err: err.message }, 'queue consumer error'),
  });

  /** A job's work in the `ccbridge.process` span, in the trace of the requests that brought it (the bridge's own tracing). */
  const traced = <T>(
    job: Parameters<BatchHandler>[0],
    info: Parameters<BatchHandler>[1],
    work: () => Promise<T>,
  ): Promise<T> => {
    const [parent, ...others] = job.traceparents ?? [];
    const attributes = {
      'ccbridge.signal': job.signal,
      'ccbridge.items': job.items,
      'ccbridge.job': info.id ?? '',
      'ccbridge.attempt': info.attempt,
    };
    return inSpan('ccbridge.process', { kind: SpanKind.CONSUMER, parent, links: others, attributes }, work);
  };

  const consumer = new BatchConsumer(
    redis,
    async (job, info) => {
      const summary = await traced(job, info, () => processBatch(deps, job.signal, job.request, info.batch));
      log.info({ job: info.id, items: job.items, ...summary }, 'processed a batch');
    },
    consumerOptions('batches'),
  );

  // Claude Code's metrics, from their own queue to LLMFlow's /v1/metrics (@ccbridge/metrics).
  const metricsDeps: ForwardDeps = {
    store: new MetricsStore(redis),
    sink: new LlmflowMetricsClient({
      url: config.llmflowUrl,
      timeoutMs: config.exportTimeoutMs,
      log: log.child({ component: 'llmflow' }),
    }),
    log,
    maxPointsPerRequest: config.exportMaxSpans,
    // The privacy switches hold for metrics too: Claude Code puts user.id, user.email, ... on every point.
    redact: (attributes) => redactor.keyValues(attributes),
    // ... and the sessions' ledgers count Claude Code's counters.
    counted: async (jobId, deltas) => {
      await ledger.addCounters(jobId, counterContributions(deltas));
    },
  };
  let saidDisabled = false;
  const metricsConsumer = new BatchConsumer(
    redis,
    async (job, info) => {
      if (!config.forwardMetrics) {
        // Queued before forwarding was turned off: taken off the queue, not sent.
        bridgeMetrics.droppedMetricPoints('disabled', job.items);
        if (!saidDisabled)
          log.info(
            { items: job.items },
            'metrics queued before BRIDGE_FORWARD_METRICS was turned off are not forwarded',
          );
        saidDisabled = true;
        return;
      }
      const summary = await traced(job, info, () =>
        forwardMetrics(metricsDeps, info.id ?? '', job.request as ExportMetricsRequest, job.items),
      );
      log.info({ job: info.id, signal: job.signal, ...summary }, 'forwarded metrics');
    },
    { ...consumerOptions('metrics'), queue: METRICS_QUEUE_NAME },
  );

  // A session is compared once neither queue holds a batch received before it went quiet.
  const oldestBacklog = async () => {
    const times = (await Promise.all([consumer.backlogSinceMs(), metricsConsumer.backlogSinceMs()])).filter(
      (t): t is number => t !== undefined,
    );
    return times.length > 0 ? Math.min(...times) : undefined;
  };
  const reconciler = new Reconciler({
    store: ledger,
    exportSpans,
    log,
    settleMs: config.sessionSettleMs,
    backlogSinceMs: oldestBacklog,
  });

  // One timer round at a time: a round still running when the next tick comes is let be.
  let round: Promise<unknown> | undefined;
  const tick = setInterval(() => {
    round ??= Promise.all([
      closer.closeDue().catch((err) => log.warn({ err: (err as Error).message }, 'drawing interaction roots failed')),
      config.forwardMetrics &&
        reconciler
          .compareDue()
          .catch((err) => log.warn({ err: (err as Error).message }, 'comparing sessions with their counters failed')),
    ]).finally(() => (round = undefined));
  }, TIMER_TICK_MS);

  // Said once at start-up, so a wrong LLMFLOW_URL shows before the first export fails.
  void probeLlmflow(config.llmflowUrl).then((probe) => {
    if (probe.answers) log.info({ llmflow: config.llmflowUrl, status: probe.status }, 'LLMFlow answers');
    else
      log.warn(
        { llmflow: config.llmflowUrl, err: probe.error },
        `LLMFlow does not answer at ${config.llmflowUrl}: ${LLMFLOW_URL_HINT}`,
      );
  });
  observeGauge(
    'queue_oldest_age_seconds',
    'Age of the oldest batch not yet processed (0: none waits)',
    async () => {
      const since = await consumer.backlogSinceMs();
      return since === undefined ? 0 : Math.max(0, Date.now() - since) / 1000;
    },
    's',
  );
  observeGauge('interactions_open', 'Turns not yet drawn, over every shard', () => store.openInteractions());

  return {
    async close() {
      // Finish the jobs in hand and stop; turns still open stay in Redis for the next worker.
      clearInterval(tick);
      await Promise.all([consumer.close(), metricsConsumer.close()]);
      await round;
      redis.disconnect();
    },
  };
}
