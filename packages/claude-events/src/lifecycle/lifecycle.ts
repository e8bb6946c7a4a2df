/**
 * The interaction lifecycle: when an interaction's root span is drawn.
 *
 * Child spans go to LLMFlow as their events arrive; the root is drawn once (LLMFlow keeps the
 * first copy of a span), so it waits until its turn is over, and the events say when that is.
 * Claude Code numbers every event a process logs (`event.sequence`, from 0, over session-level,
 * subagent and all prompts' events) and ends each turn with a marker (mapping.ts, turnEndOf).
 * A turn is whole when its end marker has arrived and no number between its `user_prompt` and
 * that marker is missing. The rules live in one Lua file, `lua/lifecycle.lua`, which the scripts
 * that change an interaction (apply.lua) and that take it to be drawn (claim.lua) include, so
 * each decision is made atomically with the state it reads. The same table, for readers:
 *
 * | phase | what the events say                                   | looked at again         | drawn then as            |
 * |-------|-------------------------------------------------------|-------------------------|--------------------------|
 * | open  | the turn is in progress (no end marker yet), however   | last event +            | complete=false,          |
 * |       | long a call or a tool takes                            | BRIDGE_TURN_TIMEOUT_MS  | end=turn_timeout         |
 * | gap   | its end is known; sequence numbers between its prompt | end seen +              | complete=false,          |
 * |       | and its end are missing                               | BRIDGE_GAP_WAIT_MS      | missing_events=N         |
 * | due   | its end is known and nothing between is missing       | now                     | complete=true            |
 * | idle  | a sender without event.sequence or prompt.id (older   | last event +            | end=idle                 |
 * |       | Claude Code): the old rule, quiet means over          | BRIDGE_INTERACTION_IDLE_MS |                       |
 * | drawn | the root is in LLMFlow                                | never: later events     | -                        |
 * |       |                                                       | join its trace, counted |                          |
 * |       |                                                       | as late                 |                          |
 *
 * Ends, strongest first: the main agent's end marker (`response`, `error`); the session's next
 * prompt in the same process (`next_prompt`: an interrupted turn, whose range ends at that
 * prompt); a prompt of a newer process of the session, e.g. `claude --resume` after Claude Code
 * was killed (`new_process`: drawn at once, complete=false). A timer that runs out while batches
 * received before it still wait in the queue waits for them (they may hold what it waits for).
 *
 * The state lives in Redis (store.ts), shared by every worker; `due` interactions are drawn by
 * the worker whose batch completed them, in the same job, and timers by whichever worker's
 * closer round comes first (closer.ts). Nothing is drawn at shutdown: a stopping worker leaves
 * open turns in Redis and the next one carries on.
 */

export type Phase = 'open' | 'gap' | 'due' | 'idle' | 'drawn';

/** Why a root is drawn: its end marker, or the timer that ran out. */
export type EndReason = 'response' | 'error' | 'next_prompt' | 'new_process' | 'turn_timeout' | 'gap_timeout' | 'idle';

/** The lifecycle's verdict on one interaction, as lifecycle.lua gives it. */
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
}

export interface LifecycleConfig {
  /** Senders without evidence (no event.sequence or prompt.id): quiet this long means over. */
  idleMs: number;
  /** A turn with no end marker and no event for this long is drawn as incomplete (Claude Code was killed). */
  turnTimeoutMs: number;
  /** How long a turn whose end has arrived waits for missing sequence numbers. */
  gapWaitMs: number;
  /** How long a claimed interaction is held before another worker may draw it (a worker that died). */
  leaseMs: number;
  /** How soon a timer held back by queued batches is looked at again. */
  recheckMs: number;
  /** How long state outlives its last event (late events still find their interaction). */
  ttlSeconds: number;
}

export const DEFAULT_LIFECYCLE: LifecycleConfig = {
  idleMs: 30_000,
  // Longer than any one tool or request is allowed to run by default (Bash: 10 minutes).
  turnTimeoutMs: 60 * 60_000,
  // A Collector retrying after an outage (the shipped config retries every 30 s at most).
  gapWaitMs: 10 * 60_000,
  leaseMs: 60_000,
  recheckMs: 1_000,
  ttlSeconds: 24 * 3600,
};

/** Where the lifecycle reads the time: the system clock, or a test's. */
export interface Clock {
  now(): number;
}

export const systemClock: Clock = { now: () => Date.now() };
