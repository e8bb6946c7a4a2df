/**
 * Which turn each event belongs to (its turn key; docs/GLOSSARY.md): its `prompt.id`, which
 * Claude Code 2.x puts on every event but those before a process's first prompt (start-up;
 * docs/CLAUDE_CODE_EVENTS.md). Such a numbered event gets no key here: lua/turns.lua (T.apply,
 * adopt), where the session's timeline and numbers are, finds the prompt its process started up
 * for, and until then its span is pending. Events of older Claude Code (no prompt.id, no
 * event.sequence) belong to the turn under way at their time in the session's timeline (its
 * prompts, kept in Redis and extended by the batch's): the latest prompt before them, or the first.
 */
import { entryOf, msOf, sequenceOf, stringOf, type ClaudeEvent } from './events';

/** A session's prompts by start time (ms). */
export type Timeline = { startMs: number; key: string }[];

export const sessionOf = (e: ClaudeEvent): string | undefined => stringOf(e.attributes['session.id']);

/** The interaction key of a turn whose events carry `prompt.id`. */
export const promptKeyOf = (promptId: string) => `prompt/${promptId}`;

/** The key an event carries itself: its prompt.id, or for a prompt without one, its own time. */
export function ownKeyOf(e: ClaudeEvent): string | undefined {
  const promptId = stringOf(e.attributes['prompt.id']);
  if (promptId) return promptKeyOf(promptId);
  const session = sessionOf(e);
  if (e.name === 'user_prompt' && session) return `session/${session}/${e.timeNs}`;
  return undefined;
}

/** Sessions whose timeline is needed to place the batch's events. */
export function sessionsToLookUp(events: ClaudeEvent[]): string[] {
  const sessions = new Set<string>();
  for (const e of events) {
    const session = sessionOf(e);
    if (session && !ownKeyOf(e) && sequenceOf(e) === undefined) sessions.add(session);
  }
  return [...sessions];
}

/**
 * Turn keys for events, in order; undefined where turns.lua (T.apply) finds the turn (start-up events,
 * numbered but without prompt.id) or the session has no prompt yet.
 */
export function assignTurns(events: ClaudeEvent[], stored: Map<string, Timeline>): (string | undefined)[] {
  const timelines = new Map([...stored].map(([session, timeline]) => [session, [...timeline]]));
  for (const e of events) {
    const session = sessionOf(e);
    const key = ownKeyOf(e);
    if (e.name === 'user_prompt' && session && key) {
      const timeline = entryOf(timelines, session, () => []);
      if (!timeline.some((p) => p.key === key)) timeline.push({ startMs: msOf(e), key });
    }
  }
  for (const timeline of timelines.values()) timeline.sort((a, b) => a.startMs - b.startMs);

  return events.map((e) => {
    const own = ownKeyOf(e);
    if (own) return own;
    const timeline = timelines.get(sessionOf(e) ?? '');
    if (!timeline?.length || sequenceOf(e) !== undefined) return undefined;
    let current = timeline[0]!;
    for (const p of timeline) if (p.startMs <= msOf(e)) current = p;
    return current.key;
  });
}
