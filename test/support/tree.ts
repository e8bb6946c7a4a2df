/**
 * The bridge's whole tree for a set of requests, drawn by the real process stage (processBatch,
 * the lifecycle scripts) over a real redis-server that this module starts on first use: tests
 * of mapping and assembly see exactly what the worker would send. Call stopTreeRedis() in after().
 */
import type { ExportLogsRequest, Span } from '@ccbridge/otlp';
import { Harness, type CollectedSpan, type HarnessOptions } from './assembly';
import { startRedis, type RedisPeer } from './peers';
import { keepForFile } from './procs';

export type FlatSpan = CollectedSpan;

let redis: Promise<RedisPeer> | undefined;

/** Every span the bridge draws for the requests, processed in order; roots drawn as the lifecycle decides. */
export async function drawTree(requests: ExportLogsRequest[], options: HarnessOptions = {}): Promise<FlatSpan[]> {
  // Shared by every test of the file that draws a tree, whichever started it.
  redis ??= startRedis().then(keepForFile);
  const h = new Harness({ url: (await redis).url }, options);
  try {
    for (const r of requests) await h.process(r);
    return [...h.stored().values()];
  } finally {
    h.disconnect();
  }
}

export async function stopTreeRedis(): Promise<void> {
  const peer = await redis;
  redis = undefined;
  await peer?.stop();
}

/** Spans the bridge draws for events that report no work (`span.type: event`): Claude Code's own trace has none. */
export const isEventSpan = (s: Span) =>
  s.attributes?.some((a) => a.key === 'span.type' && a.value?.stringValue === 'event') ?? false;

/**
 * "name <- parent name" for every span of a tree, sorted: its shape, whatever the ids. Spans
 * drawn for events that report no work are left out, to compare with Claude Code's own trace.
 */
export function shapeOf(spans: Span[]): string[] {
  const byId = new Map(spans.map((s) => [s.spanId, s]));
  return spans
    .filter((s) => !isEventSpan(s))
    .map((s) => `${s.name} <- ${s.parentSpanId ? (byId.get(s.parentSpanId)?.name ?? 'MISSING') : '(root)'}`)
    .sort();
}
