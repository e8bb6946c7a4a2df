/**
 * Spans that fit: the largest text values of a span are cut until its OTLP/JSON is under a
 * byte limit, so that one pasted log never makes LLMFlow refuse a whole turn (older LLMFlow
 * builds run on express, whose JSON body limit is 100 KB).
 *
 * A cut value keeps its start and ends with a marker saying how much was cut; the span says
 * which keys were cut and how many bytes in all (TRIMMED_KEYS, TRIMMED_BYTES). Only string
 * values are cut, largest first, and none below KEEP_CHARS: ids, names and numbers survive.
 */
import type { AnyValue, KeyValue, ResourceSpans, Span } from '@ccbridge/otlp';
import { bridgeMetrics } from '@ccbridge/telemetry';

export const TRIMMED_KEYS = 'ccbridge.trimmed.keys';
export const TRIMMED_BYTES = 'ccbridge.trimmed.bytes';
export const TRIMMED_MESSAGES = 'ccbridge.trimmed.messages';

/**
 * Conversations (the GenAI conventions' messages, a JSON array) lose whole messages, oldest
 * first, before any text is cut: the newest turn is what a reader looks for, and what is left
 * stays valid JSON. The newest message is kept whole; if it alone is too large it is cut as
 * any long text is.
 */
const CONVERSATIONS = new Set(['gen_ai.input.messages']);

/** Drops a conversation's oldest messages until the span is within budget; returns [new size, messages dropped, bytes]. */
function dropOldest(kv: KeyValue, size: number, budget: number): [number, number, number] {
  let messages: unknown;
  try {
    messages = JSON.parse(kv.value!.stringValue!);
  } catch {
    return [size, 0, 0];
  }
  if (!Array.isArray(messages) || messages.length < 2) return [size, 0, 0];
  const before = utf8(JSON.stringify(kv.value!.stringValue!));
  // Each message's share of the JSON text (with its comma), as escaped again inside the span's
  // JSON: measured only for those dropped (a large text is a pass of its own).
  const share = (m: unknown) => utf8(JSON.stringify(JSON.stringify(m))) - 1;
  let over = size - budget;
  let drop = 0;
  while (over > 0 && drop < messages.length - 1) over -= share(messages[drop++]);
  const text = JSON.stringify(messages.slice(drop));
  kv.value = { stringValue: text };
  const after = utf8(JSON.stringify(text));
  return [size - before + after, drop, before - after];
}

/** A cut value keeps at least this many characters. */
const KEEP_CHARS = 256;
const marker = (cutBytes: number) => `… [ccbridge: ${cutBytes} bytes trimmed]`;

const utf8 = (s: string) => Buffer.byteLength(s, 'utf8');

/** The bytes a span takes in an OTLP/JSON request. */
export const spanBytes = (span: Span): number => utf8(JSON.stringify(span));

/**
 * A cheap upper bound of spanBytes: JSON escaping makes a character at most 6 bytes
 * (`\u0000`), and the fixed fields stay under 1 KiB. Spans far under the limit are never
 * serialised twice.
 */
function boundBytes(span: Span): number {
  let chars = 0;
  for (const kvs of [span.attributes, ...(span.events ?? []).map((e) => e.attributes)]) {
    for (const kv of kvs ?? []) {
      // Arrays and maps are rare: measure those spans exactly.
      if (kv.value?.arrayValue || kv.value?.kvlistValue) return Infinity;
      chars += kv.key.length + 32 + (kv.value?.stringValue?.length ?? 0);
    }
  }
  return chars * 6 + 1024;
}

interface Cuttable {
  key: string;
  value: AnyValue & { stringValue: string };
}

function cuttables(span: Span): Cuttable[] {
  const out: Cuttable[] = [];
  const collect = (kvs: KeyValue[] | undefined, prefix: string) => {
    for (const kv of kvs ?? []) {
      const s = kv.value?.stringValue;
      if (s !== undefined && s.length > KEEP_CHARS)
        out.push({ key: prefix + kv.key, value: kv.value as Cuttable['value'] });
    }
  };
  collect(span.attributes, '');
  for (const e of span.events ?? []) collect(e.attributes, `${e.name}:`);
  return out;
}

/**
 * The span itself when it fits in `maxBytes`, else a copy whose largest string values are cut
 * (the original is left as it was). A span made only of short values may stay over the limit.
 */
export function fitSpan(span: Span, maxBytes: number): Span {
  if (boundBytes(span) <= maxBytes) return span;
  let size = spanBytes(span);
  if (size <= maxBytes) return span;
  const copy: Span = structuredClone(span);
  const trimmedKeys = new Set<string>();
  let trimmedBytes = 0;
  let trimmedMessages = 0;
  // Room for the attributes that say what was cut.
  const budget = maxBytes - 512;
  for (const kv of copy.attributes ?? []) {
    if (size <= budget || !CONVERSATIONS.has(kv.key) || kv.value?.stringValue === undefined) continue;
    const [next, dropped, bytes] = dropOldest(kv, size, budget);
    if (dropped === 0) continue;
    size = next;
    trimmedKeys.add(kv.key);
    trimmedBytes += bytes;
    trimmedMessages += dropped;
  }
  for (const c of cuttables(copy).sort((a, b) => b.value.stringValue.length - a.value.stringValue.length)) {
    if (size <= budget) break;
    const text = c.value.stringValue;
    const before = utf8(JSON.stringify(text));
    // Cut what is over, in characters (a character is at least one byte), keeping KEEP_CHARS.
    const textBytes = utf8(text);
    let keep = Math.max(KEEP_CHARS, text.length - (size - budget) - 64);
    let cut = text.slice(0, keep);
    let cutBytes = textBytes - utf8(cut);
    let next = cut + marker(cutBytes);
    let nextBytes = utf8(JSON.stringify(next));
    // Escapes and multi-byte characters can leave it over: halve what is kept until it fits.
    while (size - before + nextBytes > budget && keep > KEEP_CHARS) {
      keep = Math.max(KEEP_CHARS, Math.floor(keep / 2));
      cut = text.slice(0, keep);
      cutBytes = textBytes - utf8(cut);
      next = cut + marker(cutBytes);
      nextBytes = utf8(JSON.stringify(next));
    }
    c.value.stringValue = next;
    size += nextBytes - before;
    trimmedKeys.add(c.key);
    trimmedBytes += cutBytes;
  }
  if (trimmedKeys.size === 0) return span;
  bridgeMetrics.trimmedSpans(1);
  copy.attributes = [
    ...(copy.attributes ?? []).filter(
      (kv) => kv.key !== TRIMMED_KEYS && kv.key !== TRIMMED_BYTES && kv.key !== TRIMMED_MESSAGES,
    ),
    { key: TRIMMED_KEYS, value: { arrayValue: { values: [...trimmedKeys].map((k) => ({ stringValue: k })) } } },
    { key: TRIMMED_BYTES, value: { intValue: String(trimmedBytes) } },
    ...(trimmedMessages > 0 ? [{ key: TRIMMED_MESSAGES, value: { intValue: String(trimmedMessages) } }] : []),
  ];
  return copy;
}

/** Every span of a request fitted to `maxBytes`; returns the request itself when all fit. */
export function fitResourceSpans(batch: ResourceSpans[], maxBytes: number): ResourceSpans[] {
  let changed = false;
  const fitted = batch.map((rs) => ({
    ...rs,
    scopeSpans: (rs.scopeSpans ?? []).map((ss) => ({
      ...ss,
      spans: (ss.spans ?? []).map((span) => {
        const f = fitSpan(span, maxBytes);
        if (f !== span) changed = true;
        return f;
      }),
    })),
  }));
  return changed ? fitted : batch;
}
