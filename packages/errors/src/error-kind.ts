/** The three kinds of failure (kinds.ts has what each means, redis.ts which Redis errors are which). */
export type ErrorKind = 'permanent' | 'retryable' | 'backpressure';
