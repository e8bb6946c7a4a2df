/** The three kinds of failure (kinds.ts), Redis's failures typed (redis.ts), and what each stage does with each, after how long (policy.ts). */
export * from './kinds';
export * from './redis';
export * from './policy';
