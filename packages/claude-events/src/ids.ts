/**
 * Trace and span ids derived from what identifies an event, never random: a job that runs
 * twice, or a batch the Collector sends again, yields the same ids, and LLMFlow keeps one copy.
 */
import { createHash } from 'node:crypto';

const digest = (parts: readonly string[]) => createHash('sha256').update(parts.join('\u001f')).digest('hex');

/** The trace of one interaction. */
export const traceIdFor = (interactionKey: string): string => digest(['trace', interactionKey]).slice(0, 32);

/** A span, from its kind and the parts that identify it within the whole bridge. */
export const spanIdFor = (...parts: string[]): string => digest(['span', ...parts]).slice(0, 16);

/** The root span of an interaction. */
export const rootSpanIdFor = (interactionKey: string): string => spanIdFor('interaction', interactionKey);
