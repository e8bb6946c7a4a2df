/**
 * Claude Code events out of OTLP log batches: Claude Code logs each as a record whose body is
 * `claude_code.<name>` and whose attributes carry `event.name`, `event.timestamp`,
 * `event.sequence`, `session.id`, `prompt.id` and its own fields. Other records are counted and
 * passed over: the bridge draws Claude Code sessions, not arbitrary logs.
 */
import {
  attributesToRecord,
  type AttributeValue,
  type ExportLogsRequest,
  type KeyValue,
  type LogRecord,
} from '@ccbridge/otlp';

export type Attributes = Record<string, AttributeValue>;

export interface ClaudeEvent {
  /** The event's name without the `claude_code.` prefix: `api_request`, `tool_result`, ... */
  name: string;
  /** When Claude Code logged it (the end of the work it reports), in Unix nanoseconds. */
  timeNs: bigint;
  attributes: Attributes;
  /** The resource it came with, shared by every event of that resource. */
  resource: KeyValue[];
  /** The record carries trace context: Claude Code drew its own spans for it (beta tracing). */
  traced: boolean;
}

const PREFIX = 'claude_code.';

function eventNameOf(record: LogRecord, attributes: Attributes): string | undefined {
  const named = typeof attributes['event.name'] === 'string' ? attributes['event.name'] : undefined;
  for (const candidate of [record.eventName, record.body?.stringValue])
    if (candidate?.startsWith(PREFIX)) return named ?? candidate.slice(PREFIX.length);
  return undefined;
}

export const NS_PER_MS = 1_000_000n;

/** When an event was logged, in whole Unix milliseconds. */
export const msOf = (e: ClaudeEvent): number => Number(e.timeNs / NS_PER_MS);

/**
 * The event.sequence in attributes, if it is a usable one: a whole number from 0 up (Claude Code
 * numbers a process's events from 0), as a number or numeric text. Anything else (negative,
 * fractional, not a number) is no sequence number: the event is treated as one without it.
 */
export function sequenceIn(a: Attributes): number | undefined {
  const n = numberOf(a['event.sequence']);
  return n !== undefined && Number.isSafeInteger(n) && n >= 0 ? n : undefined;
}
export const sequenceOf = (e: ClaudeEvent): number | undefined => sequenceIn(e.attributes);

function timeOf(record: LogRecord, attributes: Attributes): bigint {
  for (const t of [record.timeUnixNano, record.observedTimeUnixNano]) if (t && t !== '0') return BigInt(t);
  const iso = attributes['event.timestamp'];
  const ms = typeof iso === 'string' ? Date.parse(iso) : NaN;
  return BigInt(Number.isFinite(ms) ? ms : Date.now()) * NS_PER_MS;
}

/** The Claude Code events of a logs request, and how many of its records are not (`foreign`). */
export function claudeEventsOf(request: ExportLogsRequest): { events: ClaudeEvent[]; foreign: number } {
  const events: ClaudeEvent[] = [];
  let foreign = 0;
  for (const rl of request.resourceLogs ?? []) {
    const resource = rl.resource?.attributes ?? [];
    for (const sl of rl.scopeLogs ?? [])
      for (const record of sl.logRecords ?? []) {
        const attributes = attributesToRecord(record.attributes);
        const name = eventNameOf(record, attributes);
        if (name === undefined) foreign += 1;
        else
          events.push({
            name,
            timeNs: timeOf(record, attributes),
            attributes,
            resource,
            traced: !!record.traceId && /[^0]/.test(record.traceId),
          });
      }
  }
  return { events, foreign };
}

/** A number from an attribute that may arrive as a number or a numeric string. */
export function numberOf(v: AttributeValue | undefined): number | undefined {
  if (typeof v === 'number') return v;
  if (typeof v === 'string' && v.trim() !== '' && Number.isFinite(Number(v))) return Number(v);
  return undefined;
}

/** The value at `key`, made and set first when there is none. */
export function entryOf<K, V>(map: Map<K, V>, key: K, make: () => V): V {
  let v = map.get(key);
  if (v === undefined) map.set(key, (v = make()));
  return v;
}

export function stringOf(v: AttributeValue | undefined): string | undefined {
  if (typeof v === 'string' && v !== '') return v;
  if (typeof v === 'number') return String(v);
  return undefined;
}

/** `true`, `"true"` → true; `false`, `"false"` → false; anything else → undefined. */
export const booleanOf = (v: AttributeValue | undefined): boolean | undefined =>
  v === true || v === 'true' ? true : v === false || v === 'false' ? false : undefined;
