/**
 * The turn lifecycle as TypeScript sees it: the verdicts lua/lifecycle.lua gives (it holds every
 * rule, and the phase table, so that each decision is made atomically with the state it reads)
 * and its configuration. A root is drawn once (LLMFlow keeps the first copy of a span), when the
 * events say its turn is over: by the worker whose batch completed it, or by a timers' round
 * (closer.ts). Nothing is drawn at shutdown: open turns stay in Redis for the next worker.
 */

import { defaultOf, type BridgeConfig } from '@ccbridge/config';

/** Why a root is drawn: its end marker, or the timer that ran out. */
export type EndReason = 'response' | 'error' | 'next_prompt' | 'new_process' | 'turn_timeout' | 'gap_timeout' | 'idle';

/** What TypeScript reads of the lifecycle's verdict on one turn (lifecycle.lua L.decide says what it holds). */
export interface Verdict {
  reason: EndReason;
  /** Sequence numbers missing between its prompt and its end; -1 when its prompt is missing too. */
  missing?: number;
  /** Whether a root drawn now holds its whole turn; absent when the sender gives nothing to tell by. */
  complete?: boolean;
}

/** The first four are SETTINGS (below); the others are fixed. */
export interface LifecycleConfig {
  idleMs: number;
  turnTimeoutMs: number;
  gapWaitMs: number;
  processWaitMs: number;
  /** How long a claimed interaction is held before another worker may draw it (a worker that died). */
  leaseMs: number;
  /** How soon a timer held back by queued batches is looked at again. */
  recheckMs: number;
  /** How long state outlives its last event (late events still find their interaction). */
  ttlSeconds: number;
}

/** The lifecycle's timers that are settings (packages/config); the others are fixed here. */
const SETTINGS = ['interactionIdleMs', 'turnTimeoutMs', 'gapWaitMs', 'processWaitMs'] as const;
export type LifecycleSettings = Pick<BridgeConfig, (typeof SETTINGS)[number]>;

/** The lifecycle's configuration from the bridge's: the one place its settings are read. */
export function lifecycleConfigOf(settings: LifecycleSettings): LifecycleConfig {
  return {
    idleMs: settings.interactionIdleMs,
    turnTimeoutMs: settings.turnTimeoutMs,
    gapWaitMs: settings.gapWaitMs,
    processWaitMs: settings.processWaitMs,
    leaseMs: 60_000,
    recheckMs: 1_000,
    ttlSeconds: 24 * 3600,
  };
}

/** With every setting at its default (what an unset variable gives). */
export const DEFAULT_LIFECYCLE: LifecycleConfig = lifecycleConfigOf(
  Object.fromEntries(SETTINGS.map((k) => [k, defaultOf(k)])) as LifecycleSettings,
);

/** Where the lifecycle reads the time: the system clock, or a test's. */
export interface Clock {
  now(): number;
}

export const systemClock: Clock = { now: () => Date.now() };
