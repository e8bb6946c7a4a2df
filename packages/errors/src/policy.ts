/**
 * Retry, back-off and dead-letter policy: what each stage does with a failure of each kind
 * (kinds.ts), and every delay the bridge waits before trying again, defined here and nowhere
 * else. It lives beside the kinds because every stage already depends on @ccbridge/errors and
 * on nothing of each other's: the receivers, the queue, the LLMFlow client and the worker all
 * read it from here without a new edge between them.
 *
 * | where                          | permanent                      | retryable                         | backpressure                                |
 * |--------------------------------|--------------------------------|-----------------------------------|---------------------------------------------|
 * | receiver (HTTP / gRPC)         | 400/413/415 / INVALID_ARGUMENT | 503 + Retry-After / UNAVAILABLE   | 503 + Retry-After / UNAVAILABLE             |
 * | queue job (BullMQ)             | failed set at once             | retried, JOB_BACKOFF, its attempts | back to the queue, consumer pauses (pauseAfter) |
 * | a span LLMFlow refuses         | dead-letter store at once      | (the whole job is retried)        | (the whole job waits)                       |
 * | a turn's root not exported     | -                              | looked at again after ROOT_RETRY_MS | -                                         |
 *
 * A job that used up its attempts stays in BullMQ's failed set for FAILED_JOB_KEEP_SECONDS (its
 * dead letters: `ccbridge status` counts them); spans LLMFlow refuses for their content go to the
 * dead-letter store at once (`ccbridge dead-letters`), never holding back their batch.
 */
import type { ErrorKind } from './kinds';

/** A queue job's retries: exponential from 1 s (1, 2, 4, ... s), over BRIDGE_JOB_ATTEMPTS attempts. */
export const JOB_BACKOFF = { type: 'exponential', delay: 1_000 } as const;

/** How long a job that used up its attempts stays in the failed set, so nothing vanishes unseen: a week. */
export const FAILED_JOB_KEEP_SECONDS = 7 * 24 * 3600;

/** What the queue does with a job whose handler failed, by the failure's kind. */
export const JOB_ANSWER: Record<ErrorKind, 'fail' | 'retry' | 'pause'> = {
  permanent: 'fail',
  retryable: 'retry',
  backpressure: 'pause',
};

/** The consumer's first pause after backpressure that does not say how long, and its longest. */
const FIRST_PAUSE_MS = 1_000;
const LONGEST_PAUSE_MS = 30_000;

/**
 * How long a consumer waits after `failures` backpressure failures in a row (LLMFlow down, or
 * LLMFLOW_URL wrong) when the error does not say: 1 s, doubling, at most 30 s.
 */
export function pauseAfter(failures: number): number {
  return Math.min(LONGEST_PAUSE_MS, FIRST_PAUSE_MS * 2 ** Math.min(Math.max(failures, 1) - 1, 5));
}

/** Seconds a throttled client is asked to wait (Retry-After) when the queue cannot take its request. */
export const RETRY_AFTER_SECONDS = 5;

/** How long after a turn's root could not be exported it is looked at again. */
export const ROOT_RETRY_MS = 5_000;

/** How long LLMFlow's "no metrics endpoint" holds before it is asked again (it may have been upgraded): 10 minutes. */
export const LLMFLOW_REASK_MS = 600_000;
