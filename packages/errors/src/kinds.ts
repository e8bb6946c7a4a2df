/**
 * Every failure in the pipeline is one of three kinds, as the Collector's `consumererror` has
 * them, and each boundary maps the kind, not the error, to what it answers:
 *
 * | kind         | means                                   | receiver (HTTP / gRPC)            | queue job (BullMQ)                      |
 * |--------------|-----------------------------------------|-----------------------------------|-----------------------------------------|
 * | permanent    | the data cannot be used, now or later   | 400/413/415 / INVALID_ARGUMENT... | failed at once, kept in the failed set  |
 * | retryable    | this attempt failed; another may not    | 503 + Retry-After / UNAVAILABLE   | retried with back-off (its attempts)    |
 * | backpressure | the next stage cannot take anything now | 503 + Retry-After / UNAVAILABLE   | back to the queue, the consumer pauses  |
 *
 * Errors no one typed (a library's) are classified by what they are: Redis's, as ioredis throws
 * them, by the table in redis.ts (out of memory is backpressure; a script failing at run time
 * and WRONGTYPE are permanent; a connection lost, a cluster moving or loading is retryable); a
 * TypeError, RangeError or SyntaxError comes from the data meeting the code (a number too large
 * for a BigInt, a value of the wrong type) and will come again on every attempt, so it is
 * permanent; anything else is retryable, the Collector's default.
 */
import type { ErrorKind } from './error-kind';
import { redisKindOf } from './redis';

export type { ErrorKind } from './error-kind';

/** Data that cannot be used, now or later: never retried. */
export class PermanentError extends Error {
  readonly kind: ErrorKind = 'permanent';
  override name = 'PermanentError';
}

/** This attempt failed; a later one may succeed. */
export class RetryableError extends Error {
  readonly kind: ErrorKind = 'retryable';
  override name = 'RetryableError';
}

/** The next stage cannot take anything now: wait `retryAfterMs` (when known), then try again. */
export class BackpressureError extends Error {
  readonly kind: ErrorKind = 'backpressure';
  override name = 'BackpressureError';
  constructor(
    message: string,
    readonly retryAfterMs?: number,
  ) {
    super(message);
  }
}

/** The kind of any thrown value (see the table above). */
export function kindOf(err: unknown): ErrorKind {
  if (err instanceof PermanentError || err instanceof RetryableError || err instanceof BackpressureError)
    return err.kind;
  const redis = redisKindOf(err);
  if (redis) return redis;
  if (err instanceof TypeError || err instanceof RangeError || err instanceof SyntaxError) return 'permanent';
  return 'retryable';
}
