/** The export stage against a real LLMFlow: chunking, repeated delivery, refusals. */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { LlmflowExporter, LlmflowUnavailableError, chunkResourceSpans } from '@ccbridge/llmflow';
import { silentLogger } from '@ccbridge/log';
import { spanIdFor, traceIdFor } from '@ccbridge/claude-events';
import type { ResourceSpans, Span } from '@ccbridge/otlp';
import { freePort, startLlmflow, type LlmflowPeer } from '../support/peers';

let llmflow: LlmflowPeer;
before(async () => {
  llmflow = await startLlmflow();
});
after(async () => {
  await llmflow?.stop();
});

function batch(tag: string, n: number): ResourceSpans[] {
  const traceId = traceIdFor(tag);
  const spans: Span[] = Array.from({ length: n }, (_, i) => ({
    traceId,
    spanId: spanIdFor(tag, String(i)),
    name: `span ${i}`,
    kind: 1,
    startTimeUnixNano: String(1_700_000_000_000_000_000n + BigInt(i) * 1_000_000n),
    endTimeUnixNano: String(1_700_000_000_000_000_000n + BigInt(i + 1) * 1_000_000n),
    attributes: [{ key: 'i', value: { intValue: String(i) } }],
  }));
  const half = Math.floor(n / 2);
  return [
    { resource: { attributes: [{ key: 'service.name', value: { stringValue: 'a' } }] }, scopeSpans: [{ scope: { name: 's' }, spans: spans.slice(0, half) }] },
    { resource: { attributes: [{ key: 'service.name', value: { stringValue: 'b' } }] }, scopeSpans: [{ scope: { name: 's' }, spans: spans.slice(half) }] },
  ];
}

test('chunks keep every span, in order, under its own resource', () => {
  const rs = batch('chunks', 23);
  const chunks = chunkResourceSpans(rs, 5);
  assert.equal(chunks.length, 5);
  const flat = chunks.flatMap((c) => c.flatMap((r) => r.scopeSpans!.flatMap((s) => s.spans!.map((x) => `${r.resource!.attributes![0]!.value!.stringValue}:${x.name}`))));
  const want = rs.flatMap((r) => r.scopeSpans!.flatMap((s) => s.spans!.map((x) => `${r.resource!.attributes![0]!.value!.stringValue}:${x.name}`)));
  assert.deepEqual(flat, want);
  assert.ok(chunks.every((c) => c.reduce((n, r) => n + r.scopeSpans![0]!.spans!.length, 0) <= 5));
});

test('a repeated delivery is recognised as already stored, even where LLMFlow lists only a few reasons', async () => {
  const exporter = new LlmflowExporter({ url: llmflow.url, timeoutMs: 5_000, maxSpansPerRequest: 50, log: silentLogger });
  const rs = batch('repeat', 40);
  assert.deepEqual(await exporter.export(rs), { stored: 40, duplicates: 0, refused: [] });
  assert.deepEqual(await exporter.export(rs), { stored: 0, duplicates: 40, refused: [] });
  const mixed = [...rs, ...batch('repeat-new', 6)];
  assert.deepEqual(await exporter.export(mixed), { stored: 6, duplicates: 40, refused: [] });
  const stored = (await llmflow.listed()).filter((s) => s.trace_id === traceIdFor('repeat'));
  assert.equal(stored.length, 40);
});

test('a span LLMFlow refuses is named with its reason, and holds back none of the others', async () => {
  const exporter = new LlmflowExporter({ url: llmflow.url, timeoutMs: 5_000, maxSpansPerRequest: 50, log: silentLogger });
  const rs = batch('poison', 12);
  const poison = rs[0]!.scopeSpans![0]!.spans![3]!;
  poison.startTimeUnixNano = 'not a time';
  const result = await exporter.export(rs);
  assert.equal(result.stored, 11);
  assert.deepEqual(result.refused.map((r) => r.spanId), [poison.spanId]);
  assert.ok(result.refused[0]!.reason.length > 0);
  const stored = (await llmflow.listed()).filter((s) => s.trace_id === traceIdFor('poison'));
  assert.equal(stored.length, 11);
});

test('LLMFlow away, or at a wrong URL, is "unavailable": the caller keeps the spans for later', async () => {
  const down = new LlmflowExporter({ url: `http://127.0.0.1:${await freePort()}`, timeoutMs: 2_000, maxSpansPerRequest: 50, log: silentLogger });
  await assert.rejects(down.export(batch('down', 2)), LlmflowUnavailableError);
  const wrongPath = new LlmflowExporter({ url: `${llmflow.url}/no-such-prefix`, timeoutMs: 2_000, maxSpansPerRequest: 50, log: silentLogger });
  await assert.rejects(wrongPath.export(batch('wrong', 2)), LlmflowUnavailableError);
});
