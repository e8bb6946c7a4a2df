/**
 * The worker: takes batches off the queue, turns Claude Code events into spans, sends them
 * to LLMFlow, and closes quiet interactions. Wiring only; the work is in the packages.
 */
import type { BridgeConfig } from '@ccbridge/config';
import type { Logger } from '@ccbridge/log';
import { BatchConsumer, KEY_PREFIX, PauseConsumer, connectRedis } from '@ccbridge/queue';
import { InteractionCloser, InteractionStore, createRedactor, processBatch, type BatchProcessorDeps } from '@ccbridge/claude-events';
import { LlmflowExporter, LlmflowUnavailableError } from '@ccbridge/llmflow';

export interface WorkerService {
  close(): Promise<void>;
}

/** How long the worker waits after LLMFlow could not be reached n times in a row: 1 s to 30 s. */
const pauseAfter = (failures: number) => Math.min(30_000, 1_000 * 2 ** Math.min(failures - 1, 5));

export function startWorker(config: BridgeConfig, redisUrl: string, log: Logger): WorkerService {
  const redis = connectRedis(redisUrl, 'consumer');
  redis.on('error', (err) => log.warn({ err: err.message }, 'redis connection error'));
  const exporter = new LlmflowExporter({
    url: config.llmflowUrl,
    timeoutMs: config.exportTimeoutMs,
    maxSpansPerRequest: config.exportMaxSpans,
    log: log.child({ component: 'llmflow' }),
  });
  const deps: BatchProcessorDeps = {
    store: new InteractionStore(redis, { prefix: KEY_PREFIX, idleMs: config.interactionIdleMs }),
    exportSpans: (spans) => exporter.export(spans),
    log,
    nativeTraces: config.nativeTraces,
    redactor: createRedactor({ prompts: config.privacyPrompts, toolDetails: config.privacyToolDetails, userIds: config.privacyUserIds }),
  };

  let unavailable = 0;
  const consumer = new BatchConsumer(
    redis,
    async (job, info) => {
      try {
        const summary = await processBatch(deps, job.signal, job.request);
        unavailable = 0;
        log.info({ job: info.id, items: job.items, ...summary }, 'processed a batch');
      } catch (err) {
        // LLMFlow is down or LLMFLOW_URL is wrong: keep the batch, use up none of its attempts,
        // and wait before trying anything again.
        if (!(err instanceof LlmflowUnavailableError)) throw err;
        unavailable += 1;
        log.warn({ err: err.message, pauseMs: pauseAfter(unavailable) }, 'LLMFlow is unavailable; the batch waits in the queue');
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

  const closer = new InteractionCloser(deps, { backlogSinceMs: () => consumer.backlogSinceMs() });
  const tick = setInterval(() => {
    closer.closeDue().catch((err) => log.warn({ err: (err as Error).message }, 'closing interactions failed'));
  }, Math.min(1_000, Math.max(50, Math.floor(config.interactionIdleMs / 4))));

  return {
    async close() {
      clearInterval(tick);
      // The last worker to go closes every open interaction now rather than leave it unclosed;
      // while others run, they close them when they go quiet.
      const others = await consumer.otherWorkers().catch(() => 0);
      await consumer.close();
      if (others === 0) {
        await closer.closeDue(true).catch((err) => log.warn({ err: (err as Error).message }, 'could not close open interactions'));
      } else {
        log.info({ otherWorkers: others }, 'leaving open interactions to the other workers');
      }
      redis.disconnect();
    },
  };
}
