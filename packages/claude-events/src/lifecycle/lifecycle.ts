/**
 * The turn lifecycle: when a turn's root span is drawn, as TypeScript sees it.
 *
 * Child spans go to LLMFlow as their events arrive; the root is drawn once (LLMFlow keeps the
 * first copy of a span), so it waits until its turn is over, and the events say when that is.
 * Claude Code numbers every event a process logs (`event.sequence`, from 0, over session-level,
 * subagent and all prompts' events) and ends each turn with a marker (mapping.ts, turnEndOf).
 *
 * Every rule (the phases, when a root is due, whether it is complete) lives in one Lua file,
 * `lua/lifecycle.lua`, whose header holds the phase table; the scripts that decide include it,
 * so each decision is made atomically with the state it reads. TypeScript only reads the
 * verdict they return (below). The state lives in Redis (store.ts), shared by every worker;
 * `due` turns are drawn by the worker whose batch completed them, in the same job, and timers
 * by whichever worker's closer round comes first (closer.ts). Nothing is drawn at shutdown: a
 * stopping worker leaves open turns in Redis and the next one carries on.
 */

import { defaultOf, type BridgeConfig } from '@ccbridge/config';

export type Phase = 'open' | 'gap' | 'due' | 'idle' | 'drawn';

/** Why a root is drawn: its end marker, or the timer that ran out. */
export type EndReason = 'response' | 'error' | 'next_prompt' | 'new_process' | 'turn_timeout' | 'gap_timeout' | 'idle';

/** The lifecycle's verdict on one turn, as lifecycle.lua (L.decide) gives it. */
export interface Verdict {
  key: string;
  phase: Phase;
  /** When it is looked at next (ms). */
  at: number;
  reason: EndReason;
  /** The verdict comes from a timer running out, not from evidence. */
  timer?: boolean;
  /** Sequence numbers missing between its prompt and its end; -1 when its prompt is missing too. */
  missing?: number;
  /** Whether a root drawn now holds its whole turn; absent when the sender gives nothing to tell by. */
  complete?: boolean;
}

export interface LifecycleConfig {
  /** Senders without evidence (no event.sequence or prompt.id): quiet this long means over. */
  idleMs: number;
  /** A turn with no end marker and no event for this long is drawn as incomplete (Claude Code was killed). */
  turnTimeoutMs: number;
  /** How long a turn whose end has arrived waits for missing sequence numbers. */
  gapWaitMs: number;
  /** How long a turn ended by a newer process of its session (no end marker) waits for its own last events. */
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
