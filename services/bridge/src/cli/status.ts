/**
 * `ccbridge status`: is the bridge's pipeline moving? Redis and LLMFlow reachable, the queue's
 * depth, bytes and oldest batch, what was given up on, the dead letters, the turns still open.
 * Exit 1 when Redis or LLMFlow cannot be reached.
 */
import { LifecycleStore, lifecycleConfigOf } from '@ccbridge/claude-events';
import { DeadLetterStore } from '@ccbridge/dead-letter';
import { LLMFLOW_URL_HINT, probeLlmflow } from '@ccbridge/llmflow';
import { silentLogger } from '@ccbridge/log';
import { METRICS_QUEUE_NAME, queueStatus, type QueueStatus } from '@ccbridge/queue';
import { EXIT, answer, settings, toolRedis, within, type Args } from './io';

const TIMEOUT_MS = 10_000;

export interface Status {
  redis: { url: string; reachable: boolean; error?: string };
  llmflow: { url: string; reachable: boolean; status?: number; error?: string };
  queue?: QueueStatus & { oldestAgeSeconds?: number; maxBytes: number };
  /** Claude Code's metrics on their way to LLMFlow: their own queue, with their share of the bytes. */
  metricsQueue?: QueueStatus & { maxBytes: number; forwarded: boolean };
  deadLetters?: number;
  openInteractions?: number;
}

async function llmflowStatus(url: string): Promise<Status['llmflow']> {
  const probe = await probeLlmflow(url, TIMEOUT_MS);
  return {
    url,
    reachable: probe.answers,
    ...(probe.status !== undefined && { status: probe.status }),
    ...(probe.error && { error: probe.error }),
  };
}

export async function status(args: Args): Promise<number> {
  const config = settings();
  const { redis, url } = toolRedis(config);
  const result: Status = {
    redis: { url: url.replace(/\/\/[^@]*@/, '//***@'), reachable: false },
    llmflow: { url: config.llmflowUrl, reachable: false },
  };
  try {
    const [llmflow] = await Promise.all([
      llmflowStatus(config.llmflowUrl),
      within(
        (async () => {
          await redis.ping();
          result.redis.reachable = true;
          const store = new LifecycleStore(redis, { config: lifecycleConfigOf(config) });
          const [queue, metricsQueue, deadLetters, openInteractions] = await Promise.all([
            queueStatus(redis),
            queueStatus(redis, METRICS_QUEUE_NAME),
            new DeadLetterStore(redis, { maxEntries: config.deadLetterMax, log: silentLogger }).count(),
            store.openInteractions(),
          ]);
          result.queue = {
            ...queue,
            maxBytes: config.queueMaxBytes,
            ...(queue.oldestMs !== undefined && {
              oldestAgeSeconds: Math.round((Date.now() - queue.oldestMs) / 100) / 10,
            }),
          };
          const metricsShare = config.forwardMetrics ? (config.queueMetricsMaxBytes ?? 0) : 0;
          result.queue.maxBytes -= metricsShare;
          result.metricsQueue = { ...metricsQueue, maxBytes: metricsShare, forwarded: config.forwardMetrics };
          result.deadLetters = deadLetters;
          result.openInteractions = openInteractions;
        })(),
        TIMEOUT_MS,
        `no answer within ${TIMEOUT_MS / 1000} s`,
      ).catch((err: Error) => {
        result.redis.error = err.message;
      }),
    ]);
    result.llmflow = llmflow;
  } finally {
    redis.disconnect();
  }
  answer(args, result, () => {
    const yes = (ok: boolean) => (ok ? 'reachable' : 'NOT reachable');
    const lines = [
      `Redis    ${result.redis.url}: ${yes(result.redis.reachable)}${result.redis.error ? ` (${result.redis.error})` : ''}`,
      `LLMFlow  ${result.llmflow.url}: ${yes(result.llmflow.reachable)}${result.llmflow.error ? ` (${result.llmflow.error}): ${LLMFLOW_URL_HINT}` : ''}`,
    ];
    const q = result.queue;
    if (q) {
      lines.push(
        `queue    ${q.waiting} waiting, ${q.active} in work, ${q.delayed} to retry, ${q.failed} given up on (kept a week)`,
      );
      lines.push(
        `         ${(q.bytes / 1024 / 1024).toFixed(1)} MiB of ${(q.maxBytes / 1024 / 1024).toFixed(0)} MiB${q.oldestAgeSeconds !== undefined ? `, oldest batch ${q.oldestAgeSeconds} s old` : ''}`,
      );
      const m = result.metricsQueue;
      if (m) {
        lines.push(
          m.forwarded
            ? `metrics  ${m.waiting} waiting, ${m.active} in work, ${m.delayed} to retry, ${m.failed} given up on; ${(m.bytes / 1024 / 1024).toFixed(1)} MiB of ${(m.maxBytes / 1024 / 1024).toFixed(0)} MiB`
            : `metrics  not forwarded (BRIDGE_FORWARD_METRICS=false)${m.waiting + m.active + m.delayed > 0 ? `; ${m.waiting + m.active + m.delayed} batches queued before are drained unsent` : ''}`,
        );
      }
      lines.push(`dead letters  ${result.deadLetters} (ccbridge dead-letters list)`);
      lines.push(`open turns    ${result.openInteractions}`);
    }
    return lines;
  });
  return result.redis.reachable && result.llmflow.reachable ? EXIT.ok : EXIT.problem;
}
