/**
 * The worker: takes batches off the queue, turns Claude Code events into spans, sends them
 * to LLMFlow, and closes quiet interactions. Wiring only; the work is in the packages.
 */
import type { BridgeConfig } from '@ccbridge/config';
import type { Logger } from '@ccbridge/log';
import { KEY_PREFIX, UnrecoverableError, connectRedis, startBatchConsumer } from '@ccbridge/queue';
import { InteractionCloser, InteractionStore, createRedactor, processBatch } from '@ccbridge/claude-events';
import { ExportRejectedError, LlmflowExporter } from '@ccbridge/llmflow';

export interface WorkerService {
  close(): Promise<void>;
}

export function startWorker(config: BridgeConfig, redisUrl: string, log: Logger): WorkerService {
  const redis = connectRedis(redisUrl, 'consumer');
  redis.on('error', (err) => log.warn({ err: err.message }, 'redis connection error'));
  const exporter = new LlmflowExporter({
    url: config.llmflowUrl,
    timeoutMs: config.exportTimeoutMs,
    maxSpansPerRequest: config.exportMaxSpans,
    log: log.child({ component: 'llmflow' }),
  });
  const deps = {
    store: new InteractionStore(redis, { prefix: KEY_PREFIX, idleMs: config.interactionIdleMs }),
    exportSpans: (spans: Parameters<typeof exporter.export>[0]) => exporter.export(spans),
    log,
    nativeTraces: config.nativeTraces,
    redactor: createRedactor({ prompts: config.privacyPrompts, toolDetails: config.privacyToolDetails, userIds: config.privacyUserIds }),
  };

  const consumer = startBatchConsumer(
    redis,
    async (job, info) => {
      try {
        const summary = await processBatch(deps, job.signal, job.request);
        log.info({ job: info.id, items: job.items, ...summary }, 'processed a batch');
      } catch (err) {
        // Retrying cannot help when LLMFlow refuses the request itself: fail the job at once
        // (it stays in the queue's failed set).
        if (err instanceof ExportRejectedError) throw new UnrecoverableError(err.message);
        throw err;
      }
    },
    {
      concurrency: config.workerConcurrency,
      onFailed: (job, err, final) =>
        (final ? log.error.bind(log) : log.warn.bind(log))(
          { signal: job?.signal, items: job?.items, err: err.message, final },
          final ? 'gave up on a batch; it stays in the failed set' : 'a batch failed; it will be retried',
        ),
      onError: (err) => log.warn({ err: err.message }, 'queue consumer error'),
    },
  );

  const closer = new InteractionCloser(deps);
  const tick = setInterval(() => {
    closer.closeDue().catch((err) => log.warn({ err: (err as Error).message }, 'closing interactions failed'));
  }, Math.min(1_000, Math.max(50, Math.floor(config.interactionIdleMs / 4))));

  return {
    async close() {
      clearInterval(tick);
      await consumer.close();
      // On shutdown every open interaction gets its root now rather than never.
      await closer.closeDue(true).catch((err) => log.warn({ err: (err as Error).message }, 'could not close open interactions'));
      redis.disconnect();
    },
  };
}
