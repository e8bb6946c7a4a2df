/**
 * The queue between the receive and process stages: BullMQ on Redis, one job per received
 * batch (never one per record), holding the batch in the canonical OTLP/JSON form.
 *
 * BullMQ gives what a hand-made Redis list would have to reinvent: at-least-once delivery
 * with stalled-job recovery when a worker dies, retries with exponential back-off, a failed
 * set that keeps what could not be delivered, and shared consumption by several workers.
 */
import { Queue, Worker, UnrecoverableError, type Job, type ConnectionOptions } from 'bullmq';
import type { ExportRequestBySignal, Signal } from '@ccbridge/otlp';
import { QUEUE_NAME, isReady, queuePrefix, type RedisClient } from '@ccbridge/redis';

export { UnrecoverableError };

export { QUEUE_NAME };
/** BullMQ's key prefix (keys.ts): one hash tag, so the queue also runs on a Redis Cluster. */
export const QUEUE_PREFIX = queuePrefix();

export interface BatchJob<S extends Signal = Signal> {
  signal: S;
  request: ExportRequestBySignal[S];
  /** Items (log records, data points, spans) in the batch, for logs. */
  items: number;
}

export type Acceptance = 'ok' | 'full' | 'unavailable';

export interface BatchProducerOptions {
  /** Waiting jobs at which the producer refuses more (the receiver answers 503). */
  maxWaiting: number;
  attempts: number;
  /** How long a queue-depth reading is reused, so depth costs one Redis call per interval, not per request. */
  depthCacheMs?: number;
}

/** The producer side, used by the receiver. */
export class BatchProducer {
  private readonly queue: Queue<BatchJob>;
  private depth = { value: 0, readAtMs: 0 };

  constructor(private readonly redis: RedisClient, private readonly options: BatchProducerOptions) {
    this.queue = new Queue<BatchJob>(QUEUE_NAME, {
      connection: redis as unknown as ConnectionOptions,
      prefix: QUEUE_PREFIX,
      defaultJobOptions: {
        attempts: options.attempts,
        backoff: { type: 'exponential', delay: 1_000 },
        // Done jobs are not kept; failed ones are, for a week, so nothing vanishes unseen.
        removeOnComplete: true,
        removeOnFail: { age: 7 * 24 * 3600 },
      },
    });
    // Errors surface through enqueue/acceptance; this only stops an unhandled 'error' event.
    this.queue.on('error', () => undefined);
  }

  /** Whether a batch can be taken now: Redis answers and the queue is below its bound. */
  async acceptance(nowMs = Date.now()): Promise<Acceptance> {
    if (!isReady(this.redis)) return 'unavailable';
    if (nowMs - this.depth.readAtMs > (this.options.depthCacheMs ?? 1_000)) {
      try {
        // Every batch not yet processed counts, those waiting to be retried included.
        const counts = await this.queue.getJobCounts('waiting', 'paused', 'prioritized', 'delayed');
        this.depth = { value: Object.values(counts).reduce((a, b) => a + b, 0), readAtMs: nowMs };
      } catch {
        return 'unavailable';
      }
    }
    return this.depth.value >= this.options.maxWaiting ? 'full' : 'ok';
  }

  /** Resolves once the batch is stored in Redis. */
  async enqueue<S extends Signal>(signal: S, request: ExportRequestBySignal[S], items: number): Promise<void> {
    // The job's own timestamp records when the batch was received.
    await this.queue.add(signal, { signal, request, items });
    this.depth.value += 1;
  }

  async close(): Promise<void> {
    await this.queue.close();
  }
}

export type BatchHandler = (job: BatchJob, info: { id: string | undefined; attempt: number }) => Promise<void>;

/**
 * Thrown by a handler when nothing can be processed for a while (LLMFlow is down): the job goes
 * back to the queue without using up one of its attempts, and the whole consumer waits `ms`.
 */
export class PauseConsumer extends Error {
  override name = 'PauseConsumer';
  constructor(readonly ms: number, message: string) {
    super(message);
  }
}

export interface BatchConsumerOptions {
  concurrency: number;
  onFailed?: (job: BatchJob | undefined, err: Error, final: boolean) => void;
  onError?: (err: Error) => void;
}

/**
 * Job states that hold batches not yet processed. A `delayed` job is one that failed and waits
 * for its next attempt (minutes, with back-off): it does not hold back timers, or one bad batch
 * would stop every root from being drawn; its events join their turns late, as late events do.
 */
const BACKLOG_STATES = ['wait', 'paused', 'prioritized', 'active'] as const;

/** The consumer side, used by the worker. Throw from the handler to have the job retried. */
export class BatchConsumer {
  private readonly worker: Worker<BatchJob>;
  /** For the queue-wide calls a Worker does not offer (rate limit, backlog, other workers). */
  private readonly queue: Queue<BatchJob>;

  constructor(redis: RedisClient, handler: BatchHandler, options: BatchConsumerOptions) {
    const connection = redis as unknown as ConnectionOptions;
    this.queue = new Queue<BatchJob>(QUEUE_NAME, { connection, prefix: QUEUE_PREFIX });
    this.queue.on('error', (err) => options.onError?.(err));
    this.worker = new Worker<BatchJob>(
      QUEUE_NAME,
      async (job: Job<BatchJob>) => {
        try {
          await handler(job.data, { id: job.id, attempt: job.attemptsMade + 1 });
        } catch (err) {
          if (!(err instanceof PauseConsumer)) throw err;
          await this.queue.rateLimit(err.ms);
          throw Worker.RateLimitError();
        }
      },
      // A limiter must be set for a manual rate limit to hold; this one never binds by itself.
      { connection, prefix: QUEUE_PREFIX, concurrency: options.concurrency, autorun: true, limiter: { max: 1_000_000, duration: 1_000 } },
    );
    this.worker.on('failed', (job, err) => {
      const final = !job || err instanceof UnrecoverableError || job.attemptsMade >= (job.opts.attempts ?? 1);
      options.onFailed?.(job?.data, err, final);
    });
    this.worker.on('error', (err) => options.onError?.(err));
  }

  /** When the oldest batch not yet processed was received (ms), or undefined when none waits. */
  async backlogSinceMs(): Promise<number | undefined> {
    const oldest = await Promise.all(BACKLOG_STATES.map((state) => this.queue.getJobs([state], 0, 0, true)));
    const times = oldest.flat().map((job) => job.timestamp).filter((t) => Number.isFinite(t));
    return times.length > 0 ? Math.min(...times) : undefined;
  }

  /** Other workers consuming the same queue now. */
  async otherWorkers(): Promise<number> {
    return Math.max(0, (await this.queue.getWorkersCount()) - 1);
  }

  async close(): Promise<void> {
    await this.worker.close();
    await this.queue.close();
  }
}
