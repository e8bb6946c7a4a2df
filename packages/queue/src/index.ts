/**
 * The queue between the receive and process stages: BullMQ on Redis, one job per received
 * batch (never one per record), holding the batch compact (stored.ts), bounded in jobs, in
 * bytes and by Redis's own memory limit.
 *
 * BullMQ gives what a hand-made Redis list would have to reinvent: at-least-once delivery
 * with stalled-job recovery when a worker dies, retries with exponential back-off, a failed
 * set that keeps what could not be delivered, and shared consumption by several workers.
 */
import { Queue, Worker, UnrecoverableError, type Job, type ConnectionOptions } from 'bullmq';
import {
  FAILED_JOB_KEEP_SECONDS,
  JOB_ANSWER,
  JOB_BACKOFF,
  kindOf,
  pauseAfter,
  type BackpressureError,
} from '@ccbridge/errors';
import { Cluster } from 'ioredis';
import type { Signal } from '@ccbridge/otlp';
import path from 'node:path';
import {
  METRICS_QUEUE_NAME,
  QUEUE_NAME,
  defineScript,
  isReady,
  queueBytesKey,
  queueJobKeyPrefix,
  queueKey,
  queuePrefix,
  type RedisClient,
} from '@ccbridge/redis';
import { GroupCommit, type Group } from './group';
import {
  batchOf,
  groupPart,
  storedBatch,
  storedBytes,
  type BatchJob,
  type QueuedBatch,
  type ReceivedBatch,
} from './stored';

export { GroupCommit, type Group, type GroupPart } from './group';
export {
  STORED_FORMAT,
  batchOf,
  groupPart,
  storedBatch,
  type BatchJob,
  type QueuedBatch,
  type ReceivedBatch,
  type StoredBatch,
} from './stored';

export { UnrecoverableError };

export { METRICS_QUEUE_NAME, QUEUE_NAME };
/** BullMQ's key prefix (keys.ts): one hash tag, so the queue also runs on a Redis Cluster. */
export const QUEUE_PREFIX = queuePrefix();

export type Acceptance = 'ok' | 'full' | 'unavailable';

/**
 * Requests received while a job is being added share the next job up to this much protobuf
 * (group.ts): about 14 of Claude Code's 100-record batches, and what a worker decodes at once
 * stays a few MB of objects.
 */
const GROUP_MAX_PROTOBUF_BYTES = 128 * 1024;

export interface BatchProducerOptions {
  /** Waiting jobs at which the producer refuses more (the receiver answers 503), per queue. */
  maxWaiting: number;
  /** Bytes of queued events and spans at which the producer refuses more. */
  maxBytes: number;
  /**
   * Metrics are queued (in a queue of their own) only when this is set, up to these bytes: their
   * own share, so they never take the room of events. Unset: they are not queued.
   */
  metricsMaxBytes?: number;
  /** Share of Redis's `maxmemory` in use at which the producer refuses more (when Redis has one). */
  memoryHighWater?: number;
  attempts: number;
  /** How long a queue-depth reading is reused, so depth costs one Redis call per interval, not per request. */
  depthCacheMs?: number;
  /** How often a reading counts the queue's bytes from the jobs themselves (recount.lua) instead of reading the count. */
  recountMs?: number;
}

const LUA = path.join(__dirname, '..', 'lua');
/** The keys recount.lua takes, in its order, for a queue. */
const recountKeys = (name: string) => [
  ...['wait', 'active', 'paused', 'prioritized', 'delayed'].map((part) => queueKey(part, undefined, name)),
  queueBytesKey(undefined, name),
];

type RecountingClient = RedisClient & { ccbridgeRecount(...args: string[]): Promise<number> };

/** The queue a signal travels in: metrics in their own, events and spans in the batches' queue. */
export const queueOf = (signal: Signal) => (signal === 'metrics' ? METRICS_QUEUE_NAME : QUEUE_NAME);

/**
 * Redis's memory in use and its limit (0: none), from INFO: of the master nearest its limit,
 * over a cluster's masters.
 */
async function redisMemory(redis: RedisClient): Promise<{ used: number; max: number }> {
  const nodes = redis instanceof Cluster ? redis.nodes('master') : [redis];
  const all = await Promise.all(
    nodes.map(async (node) => {
      const info = await node.info('memory');
      return {
        used: Number(/used_memory:(\d+)/.exec(info)?.[1] ?? 0),
        max: Number(/maxmemory:(\d+)/.exec(info)?.[1] ?? 0),
      };
    }),
  );
  return all.reduce((a, b) => (b.max > 0 && (a.max === 0 || b.used / b.max > a.used / a.max) ? b : a), {
    used: 0,
    max: 0,
  });
}

/** One queue the producer adds to, with its own bound in bytes and its last reading. */
interface Lane {
  name: string;
  queue: Queue<QueuedBatch>;
  bytesKey: string;
  maxBytes: number;
  jobs: number;
  bytes: number;
}

const jobOptions = (attempts: number) => ({
  attempts,
  backoff: JOB_BACKOFF,
  // Done jobs are not kept; failed ones are (policy: @ccbridge/errors), so nothing vanishes unseen.
  removeOnComplete: true,
  removeOnFail: { age: FAILED_JOB_KEEP_SECONDS },
});

/** The producer side, used by the receiver. */
export class BatchProducer {
  private readonly lanes = new Map<string, Lane>();
  /** When the lanes were last read, and Redis's memory then, plus what this producer queued since (readings are a second apart). */
  private depth = { memoryUsed: 0, memoryMax: 0, readAtMs: 0 };
  private recountedAtMs = 0;
  private underway: Promise<{ jobs: number; bytes: number; maxBytes: number }> | undefined;
  private readonly groups = new GroupCommit((signal, group) => this.add(signal, group), GROUP_MAX_PROTOBUF_BYTES);

  constructor(
    private readonly redis: RedisClient,
    private readonly options: BatchProducerOptions,
  ) {
    defineScript(redis, 'ccbridgeRecount', LUA, 'recount.lua', recountKeys(QUEUE_NAME).length);
    const lane = (name: string, maxBytes: number) => {
      const queue = new Queue<QueuedBatch>(name, {
        connection: redis as unknown as ConnectionOptions,
        prefix: QUEUE_PREFIX,
        defaultJobOptions: jobOptions(options.attempts),
      });
      // Errors surface through enqueue/acceptance; this only stops an unhandled 'error' event.
      queue.on('error', () => undefined);
      this.lanes.set(name, { name, queue, bytesKey: queueBytesKey(undefined, name), maxBytes, jobs: 0, bytes: 0 });
    };
    lane(QUEUE_NAME, options.maxBytes);
    if (options.metricsMaxBytes !== undefined) lane(METRICS_QUEUE_NAME, options.metricsMaxBytes);
  }

  /** Whether batches of this signal go to a queue (metrics only when they are forwarded). */
  queues(signal: Signal): boolean {
    return this.lanes.has(queueOf(signal));
  }

  /**
   * Whether a batch of this signal can be taken now: Redis answers, its queue is below its
   * bounds (jobs and bytes), and Redis is below its memory's high-water mark.
   */
  async acceptance(signal: Signal, nowMs = Date.now()): Promise<Acceptance> {
    const lane = this.lanes.get(queueOf(signal));
    if (!lane || !isReady(this.redis)) return 'unavailable';
    try {
      await this.read(nowMs);
    } catch {
      return 'unavailable';
    }
    const { memoryUsed, memoryMax } = this.depth;
    const memoryFull = memoryMax > 0 && memoryUsed >= memoryMax * (this.options.memoryHighWater ?? 0.9);
    const full = lane.jobs >= this.options.maxWaiting || lane.bytes >= lane.maxBytes || memoryFull;
    return full ? 'full' : 'ok';
  }

  /**
   * The queues' depth, read now, over both queues (for metrics: a scrape is rare); throws when
   * Redis does not answer. Callers that ask while a reading is under way share it: a scrape's
   * gauges cost one read.
   */
  reading(nowMs = Date.now()): Promise<{ jobs: number; bytes: number; maxBytes: number }> {
    this.underway ??= this.read(nowMs, true)
      .then(() => {
        const lanes = [...this.lanes.values()];
        const total = (f: (l: Lane) => number) => lanes.reduce((sum, l) => sum + f(l), 0);
        return { jobs: total((l) => l.jobs), bytes: total((l) => l.bytes), maxBytes: total((l) => l.maxBytes) };
      })
      .finally(() => {
        this.underway = undefined;
      });
    return this.underway;
  }

  /** Reads the queues' depth and Redis's memory, unless the last reading is recent; every recountMs, counts the bytes again from the jobs. */
  private async read(nowMs: number, fresh = false): Promise<void> {
    if (!fresh && nowMs - this.depth.readAtMs <= (this.options.depthCacheMs ?? 1_000)) return;
    // Every batch not yet processed counts, those waiting to be retried included.
    const recount = nowMs - this.recountedAtMs >= (this.options.recountMs ?? 60_000);
    const lanes = [...this.lanes.values()];
    const [readings, memory] = await Promise.all([
      Promise.all(
        lanes.map((lane) =>
          Promise.all([
            lane.queue.getJobCounts('waiting', 'paused', 'prioritized', 'delayed'),
            recount
              ? (this.redis as RecountingClient).ccbridgeRecount(
                  ...recountKeys(lane.name),
                  queueJobKeyPrefix(undefined, lane.name),
                )
              : this.redis.get(lane.bytesKey),
          ]),
        ),
      ),
      redisMemory(this.redis),
    ]);
    if (recount) this.recountedAtMs = nowMs;
    lanes.forEach((lane, i) => {
      const [counts, bytes] = readings[i]!;
      lane.jobs = Object.values(counts).reduce((a, b) => a + b, 0);
      lane.bytes = Number(bytes ?? 0);
    });
    this.depth = { memoryUsed: memory.used, memoryMax: memory.max, readAtMs: nowMs };
  }

  /** Resolves once the batch is stored in Redis (in a job it may share with others received meanwhile). */
  async enqueue(signal: Signal, batch: ReceivedBatch): Promise<void> {
    await this.groups.commit(signal, await groupPart(batch));
  }

  private async add(signal: Signal, group: Group): Promise<void> {
    const lane = this.lanes.get(queueOf(signal));
    if (!lane) throw new Error(`${signal} are not queued`);
    const stored = storedBatch(signal, group);
    const bytes = storedBytes(stored);
    // The job's own timestamp records when the batch was received.
    // Counted as it is added (one round trip, not two); a failed add counts high, the safe side
    // (and recount.lua puts the count right).
    await Promise.all([lane.queue.add(signal, stored), this.redis.incrby(lane.bytesKey, bytes)]);
    // Counted here until the next reading, so a fast receiver cannot run a second past a bound.
    lane.jobs += 1;
    lane.bytes += bytes;
    this.depth.memoryUsed += bytes;
  }

  async close(): Promise<void> {
    await Promise.all([...this.lanes.values()].map((lane) => lane.queue.close()));
  }
}

/** When the oldest job in any of `states` was received (ms), or undefined when none is there. */
async function oldestJobMs(queue: Queue<QueuedBatch>, states: readonly string[]): Promise<number | undefined> {
  const oldest = await Promise.all(states.map((state) => queue.getJobs([state as 'wait'], 0, 0, true)));
  const times = oldest
    .flat()
    .map((job) => job.timestamp)
    .filter((t) => Number.isFinite(t));
  return times.length > 0 ? Math.min(...times) : undefined;
}

export interface QueueStatus {
  waiting: number;
  active: number;
  /** Waiting to be tried again. */
  delayed: number;
  /** Given up on, kept for a week. */
  failed: number;
  /** What the batches not yet processed take in Redis (the byte bound's count). */
  bytes: number;
  /** When the oldest batch not yet processed was received (ms), if any. */
  oldestMs?: number;
}

/** A queue as an operator sees it (ccbridge status): the batches' queue, or the metrics' (METRICS_QUEUE_NAME). */
export async function queueStatus(redis: RedisClient, name = QUEUE_NAME): Promise<QueueStatus> {
  const queue = new Queue<QueuedBatch>(name, {
    connection: redis as unknown as ConnectionOptions,
    prefix: QUEUE_PREFIX,
  });
  try {
    const [counts, bytes, oldestMs] = await Promise.all([
      queue.getJobCounts('waiting', 'paused', 'prioritized', 'active', 'delayed', 'failed'),
      redis.get(queueBytesKey(undefined, name)),
      oldestJobMs(queue, [...BACKLOG_STATES, 'delayed']),
    ]);
    return {
      waiting: (counts.waiting ?? 0) + (counts.paused ?? 0) + (counts.prioritized ?? 0),
      active: counts.active ?? 0,
      delayed: counts.delayed ?? 0,
      failed: counts.failed ?? 0,
      bytes: Number(bytes ?? 0),
      ...(oldestMs !== undefined && { oldestMs }),
    };
  } finally {
    await queue.close();
  }
}

export type BatchHandler = (
  job: BatchJob,
  info: {
    id: string | undefined;
    attempt: number;
    /**
     * The job's id with the time it was queued: the same on every attempt, and never that of
     * another job (BullMQ's ids start again from 1 in a queue that was emptied).
     */
    batch: string | undefined;
  },
) => Promise<void>;

export interface BatchConsumerOptions {
  concurrency: number;
  /** The queue to consume: the batches' (default) or the metrics' (METRICS_QUEUE_NAME). */
  queue?: string;
  /** A job failed (not paused): `final` when it went to the failed set, to stay there. */
  onFailed?: (job: Pick<BatchJob, 'signal' | 'items'> | undefined, err: Error, final: boolean) => void;
  /** The consumer pauses `ms` after backpressure (LLMFlow cannot take anything now); the job keeps its attempts. */
  onPause?: (err: Error, ms: number) => void;
  onError?: (err: Error) => void;
}

/**
 * Job states that hold batches not yet processed. A `delayed` job is one that failed and waits
 * for its next attempt (minutes, with back-off): it does not hold back timers, or one bad batch
 * would stop every root from being drawn; its events join their turns late, as late events do.
 */
const BACKLOG_STATES = ['wait', 'paused', 'prioritized', 'active'] as const;

/**
 * The consumer side, used by the worker. What becomes of a job whose handler throws is the
 * error's kind, answered as the policy says (@ccbridge/errors): retried, failed at once, or put
 * back while the whole consumer pauses.
 */
export class BatchConsumer {
  private readonly worker: Worker<QueuedBatch>;
  /** For the queue-wide calls a Worker does not offer (rate limit, backlog, other workers). */
  private readonly queue: Queue<QueuedBatch>;
  /** Backpressure failures in a row (none since the last job that went through): the pause grows with them. */
  private pressed = 0;

  constructor(redis: RedisClient, handler: BatchHandler, options: BatchConsumerOptions) {
    const connection = redis as unknown as ConnectionOptions;
    const name = options.queue ?? QUEUE_NAME;
    const bytesKey = queueBytesKey(undefined, name);
    this.queue = new Queue<QueuedBatch>(name, { connection, prefix: QUEUE_PREFIX });
    this.queue.on('error', (err) => options.onError?.(err));
    this.worker = new Worker<QueuedBatch>(
      name,
      async (job: Job<QueuedBatch>) => {
        let batch: BatchJob;
        try {
          batch = await batchOf(job.data);
        } catch (err) {
          // Data that cannot be read will not read better later: straight to the failed set.
          throw new UnrecoverableError(`the job's batch cannot be read: ${(err as Error).message}`);
        }
        try {
          const id = job.id === undefined ? undefined : `${job.id}@${job.timestamp}`;
          await handler(batch, { id: job.id, attempt: job.attemptsMade + 1, batch: id });
          this.pressed = 0;
        } catch (err) {
          // The error's kind (@ccbridge/errors), in BullMQ's terms.
          switch (JOB_ANSWER[kindOf(err)]) {
            case 'pause': {
              this.pressed += 1;
              const ms = (err as BackpressureError).retryAfterMs ?? pauseAfter(this.pressed);
              options.onPause?.(err as Error, ms);
              await this.queue.rateLimit(ms);
              throw Worker.RateLimitError();
            }
            case 'fail':
              // It would fail the same way on every attempt: to the failed set at once, with its reason.
              throw new UnrecoverableError(`${(err as Error).name}: ${(err as Error).message}`);
            case 'retry':
              throw err;
          }
        }
      },
      // A limiter must be set for a manual rate limit to hold; this one never binds by itself.
      {
        connection,
        prefix: QUEUE_PREFIX,
        concurrency: options.concurrency,
        autorun: true,
        limiter: { max: 1_000_000, duration: 1_000 },
      },
    );
    // What a job held leaves the byte count once it is done with: processed, or given up on
    // (kept in the failed set for a week, under Redis's memory mark rather than the queue's bound).
    const release = (job: Job<QueuedBatch> | undefined) => {
      const bytes = storedBytes(job?.data);
      if (bytes > 0) redis.decrby(bytesKey, bytes).catch((err: Error) => options.onError?.(err));
    };
    this.worker.on('completed', (job) => release(job));
    this.worker.on('failed', (job, err) => {
      // A paused job was put back, not failed (onPause said so).
      if (err.name === 'RateLimitError') return;
      const final = !job || err instanceof UnrecoverableError || job.attemptsMade >= (job.opts.attempts ?? 1);
      if (final) release(job);
      options.onFailed?.(job ? { signal: job.data.signal, items: job.data.items } : undefined, err, final);
    });
    this.worker.on('error', (err) => options.onError?.(err));
  }

  /** When the oldest batch not yet processed was received (ms), or undefined when none waits. */
  backlogSinceMs(): Promise<number | undefined> {
    return oldestJobMs(this.queue, BACKLOG_STATES);
  }

  async close(): Promise<void> {
    await this.worker.close();
    await this.queue.close();
  }
}
