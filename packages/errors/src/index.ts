/** The three kinds of failure (kinds.ts) and what each stage does with each, after how long (policy.ts). */
export * from './kinds';
export * from './policy';
