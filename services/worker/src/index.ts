/**
 * The worker: takes batches off the queue, turns Claude Code events into spans, sends them
 * to LLMFlow, and draws each turn's root when its events say it is over (the lifecycle, in
 * @ccbridge/claude-events). Wiring only; the work is in the packages.
 */
import type { BridgeConfig } from '@ccbridge/config';
import type { Logger } from '@ccbridge/log';
import { BatchConsumer, PauseConsumer } from '@ccbridge/queue';
import { connectRedis, type RedisTarget } from '@ccbridge/redis';
import { InteractionCloser, LifecycleStore, createRedactor, processBatch, type BatchProcessorDeps } from '@ccbridge/claude-events';
import { DeadLetterStore } from '@ccbridge/dead-letter';
import { LLMFLOW_URL_HINT, LlmflowExporter, LlmflowUnavailableError, probeLlmflow } from '@ccbridge/llmflow';
import { SpanKind, bridgeMetrics, inSpan, observeGauge } from '@ccbridge/telemetry';

export interface WorkerService {
  close(): Promise<void>;
}

/** How long the worker waits after LLMFlow could not be reached n times in a row: 1 s to 30 s. */
const pauseAfter = (failures: number) => Math.min(30_000, 1_000 * 2 ** Math.min(failures - 1, 5));

/** How often the closer looks for timers that ran out (idle, turn timeout, gap wait, retries). */
const TIMER_TICK_MS = 1_000;

export function startWorker(config: BridgeConfig, target: RedisTarget, log: Logger): WorkerService {
  const redis = connectRedis(target, 'consumer');
  redis.on('error', (err) => log.warn({ err: err.message }, 'redis connection error'));
  const exporter = new LlmflowExporter({
    url: config.llmflowUrl,
    timeoutMs: config.exportTimeoutMs,
    maxSpansPerRequest: config.exportMaxSpans,
    spanMaxBytes: config.spanMaxBytes,
    log: log.child({ component: 'llmflow' }),
  });
  const deadLetters = new DeadLetterStore(redis, { maxEntries: config.deadLetterMax, log: log.child({ component: 'dead-letter' }) });
  const store = new LifecycleStore(redis, {
    config: { idleMs: config.interactionIdleMs, turnTimeoutMs: config.turnTimeoutMs, gapWaitMs: config.gapWaitMs },
  });
  // Spans LLMFlow refuses for their content go to the dead-letter store at once: they are
  // never retried by themselves and never hold back a batch or a root.
  const exportSpans: BatchProcessorDeps['exportSpans'] = async (spans, source) => {
    const { refused } = await exporter.export(spans);
    await deadLetters.add(refused, source);
  };
  // Set once the consumer exists: timers wait for batches received before they ran out.
  let consumer: BatchConsumer | undefined;
  const closer = new InteractionCloser({ store, exportSpans, log, backlogSinceMs: async () => consumer?.backlogSinceMs() });
  const deps: BatchProcessorDeps = {
    store,
    closer,
    exportSpans,
    log,
    nativeTraces: config.nativeTraces,
    eventRows: config.eventRows,
    redactor: createRedactor({ prompts: config.privacyPrompts, toolDetails: config.privacyToolDetails, userIds: config.privacyUserIds }),
  };

  let unavailable = 0;
  consumer = new BatchConsumer(
    redis,
    async (job, info) => {
      try {
        const [parent, ...others] = job.traceparents ?? [];
        const attributes = { 'ccbridge.signal': job.signal, 'ccbridge.items': job.items, 'ccbridge.job': info.id ?? '', 'ccbridge.attempt': info.attempt };
        const summary = await inSpan('ccbridge.process', { kind: SpanKind.CONSUMER, parent, links: others, attributes }, () => processBatch(deps, job.signal, job.request));
        unavailable = 0;
        log.info({ job: info.id, items: job.items, ...summary }, 'processed a batch');
      } catch (err) {
        // LLMFlow is down or LLMFLOW_URL is wrong: keep the batch, use up none of its attempts,
        // and wait before trying anything again.
        if (!(err instanceof LlmflowUnavailableError)) throw err;
        unavailable += 1;
        bridgeMetrics.pause();
        log.warn({ err: err.message, pauseMs: pauseAfter(unavailable), hint: LLMFLOW_URL_HINT }, 'LLMFlow is unavailable; the batch waits in the queue');
        throw new PauseConsumer(pauseAfter(unavailable), err.message);
      }
    },
    {
      concurrency: config.workerConcurrency,
      onFailed: (job, err, final) => {
        if (err.name === 'RateLimitError') return;
        (final ? log.error.bind(log) : log.warn.bind(log))(
          { signal: job?.signal, items: job?.items, err: err.message, final },
          final ? 'gave up on a batch; it stays in the failed set' : 'a batch failed; it will be retried',
        );
      },
      onError: (err) => log.warn({ err: err.message }, 'queue consumer error'),
    },
  );

  // One timer round at a time: a round still running when the next tick comes is let be.
  let round: Promise<unknown> | undefined;
  const tick = setInterval(() => {
    round ??= closer
      .closeDue()
      .catch((err) => log.warn({ err: (err as Error).message }, 'drawing interaction roots failed'))
      .finally(() => (round = undefined));
  }, TIMER_TICK_MS);

  // Said once at start-up, so a wrong LLMFLOW_URL shows before the first export fails.
  void probeLlmflow(config.llmflowUrl).then((probe) => {
    if (probe.answers) log.info({ llmflow: config.llmflowUrl, status: probe.status }, 'LLMFlow answers');
    else log.warn({ llmflow: config.llmflowUrl, err: probe.error }, `LLMFlow does not answer at ${config.llmflowUrl}: ${LLMFLOW_URL_HINT}`);
  });
  observeGauge('queue_oldest_age_seconds', 'Age of the oldest batch not yet processed (0: none waits)', async () => {
    const since = await consumer?.backlogSinceMs();
    return since === undefined ? 0 : Math.max(0, Date.now() - since) / 1000;
  }, 's');
  observeGauge('interactions_open', 'Turns not yet drawn, over every shard', () => store.openInteractions());

  return {
    async close() {
      // Finish the jobs in hand and stop; turns still open stay in Redis for the next worker.
      clearInterval(tick);
      await consumer?.close();
      await round;
      redis.disconnect();
    },
  };
}
