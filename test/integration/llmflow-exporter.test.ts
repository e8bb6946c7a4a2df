/** The export stage against a real LLMFlow: chunking, repeated delivery, refusals. */
import { test, before, after } from 'node:test';
import { spawn } from 'node:child_process';
import path from 'node:path';
import assert from 'node:assert/strict';
import { LlmflowExporter, LlmflowUnavailableError, TRIMMED_KEYS, chunkResourceSpans } from '@ccbridge/llmflow';
import { silentLogger } from '@ccbridge/log';
import { spanIdFor, traceIdFor } from '@ccbridge/claude-events';
import type { ResourceSpans, Span } from '@ccbridge/otlp';
import { startRelay } from '../support/relay';
import { BUN, startLlmflow, type LlmflowPeer } from '../support/peers';
import { startLlmflowGate } from '../support/llmflow-gate';

let llmflow: LlmflowPeer;
before(async () => {
  llmflow = await startLlmflow();
});
after(async () => {
  await llmflow?.stop();
});

/** An exporter to `url` with the worker's usual limits. */
const exporterTo = (url: string, timeoutMs = 5_000) =>
  new LlmflowExporter({ url, timeoutMs, maxSpansPerRequest: 50, spanMaxBytes: 65_536, log: silentLogger });

function batch(tag: string, n: number, text: (i: number) => string = () => ''): ResourceSpans[] {
  const traceId = traceIdFor(tag);
  const spans: Span[] = Array.from({ length: n }, (_, i) => ({
    traceId,
    spanId: spanIdFor(tag, String(i)),
    name: `span ${i}`,
    kind: 1,
    startTimeUnixNano: String(1_700_000_000_000_000_000n + BigInt(i) * 1_000_000n),
    endTimeUnixNano: String(1_700_000_000_000_000_000n + BigInt(i + 1) * 1_000_000n),
    attributes: [
      { key: 'i', value: { intValue: String(i) } },
      ...(text(i) ? [{ key: 'gen_ai.prompt', value: { stringValue: text(i) } }] : []),
    ],
  }));
  const half = Math.floor(n / 2);
  return [
    {
      resource: { attributes: [{ key: 'service.name', value: { stringValue: 'a' } }] },
      scopeSpans: [{ scope: { name: 's' }, spans: spans.slice(0, half) }],
    },
    {
      resource: { attributes: [{ key: 'service.name', value: { stringValue: 'b' } }] },
      scopeSpans: [{ scope: { name: 's' }, spans: spans.slice(half) }],
    },
  ];
}

test('chunks keep every span, in order, under its own resource', () => {
  const rs = batch('chunks', 23);
  const chunks = chunkResourceSpans(rs, 5);
  assert.equal(chunks.length, 5);
  const flat = chunks.flatMap((c) =>
    c.flatMap((r) =>
      r.scopeSpans!.flatMap((s) => s.spans!.map((x) => `${r.resource!.attributes![0]!.value!.stringValue}:${x.name}`)),
    ),
  );
  const want = rs.flatMap((r) =>
    r.scopeSpans!.flatMap((s) => s.spans!.map((x) => `${r.resource!.attributes![0]!.value!.stringValue}:${x.name}`)),
  );
  assert.deepEqual(flat, want);
  assert.ok(chunks.every((c) => c.reduce((n, r) => n + r.scopeSpans![0]!.spans!.length, 0) <= 5));
});

test('a repeated delivery is recognised as already stored, even where LLMFlow lists only a few reasons', async () => {
  const exporter = exporterTo(llmflow.url);
  const rs = batch('repeat', 40);
  assert.deepEqual(await exporter.export(rs), { stored: 40, duplicates: 0, refused: [] });
  assert.deepEqual(await exporter.export(rs), { stored: 0, duplicates: 40, refused: [] });
  const mixed = [...rs, ...batch('repeat-new', 6)];
  assert.deepEqual(await exporter.export(mixed), { stored: 6, duplicates: 40, refused: [] });
  const stored = (await llmflow.listed()).filter((s) => s.trace_id === traceIdFor('repeat'));
  assert.equal(stored.length, 40);
});

test('a span LLMFlow refuses is named with its reason, and holds back none of the others', async () => {
  const exporter = exporterTo(llmflow.url);
  const rs = batch('poison', 12);
  const poison = rs[0]!.scopeSpans![0]!.spans![3]!;
  poison.startTimeUnixNano = 'not a time';
  const result = await exporter.export(rs);
  assert.equal(result.stored, 11);
  assert.deepEqual(
    result.refused.map((r) => r.spanId),
    [poison.spanId],
  );
  assert.ok(result.refused[0]!.reason.length > 0);
  const stored = (await llmflow.listed()).filter((s) => s.trace_id === traceIdFor('poison'));
  assert.equal(stored.length, 11);
});

test('LLMFlow away, or at a wrong URL, is "unavailable": the caller keeps the spans for later', async () => {
  const away = await startRelay(); // resets every connection, as an address where LLMFlow is down
  const down = new LlmflowExporter({
    url: away.url,
    timeoutMs: 2_000,
    maxSpansPerRequest: 50,
    spanMaxBytes: 65_536,
    log: silentLogger,
  });
  await assert.rejects(down.export(batch('down', 2)), LlmflowUnavailableError);
  await away.stop();
  const wrongPath = new LlmflowExporter({
    url: `${llmflow.url}/no-such-prefix`,
    timeoutMs: 2_000,
    maxSpansPerRequest: 50,
    spanMaxBytes: 65_536,
    log: silentLogger,
  });
  await assert.rejects(wrongPath.export(batch('wrong', 2)), LlmflowUnavailableError);
});

const EXPRESS_LIMIT = 100 * 1024;

test('an LLMFlow on express (100 KB bodies) takes every span of a large batch, a 150 KB prompt cut to fit and marked', async () => {
  const gate = await startLlmflowGate(llmflow.url, { maxBodyBytes: EXPRESS_LIMIT });
  try {
    const exporter = new LlmflowExporter({
      url: gate.url,
      timeoutMs: 5_000,
      maxSpansPerRequest: 512,
      spanMaxBytes: 64 * 1024,
      log: silentLogger,
    });
    const prompt = `PASTED LOG ${'line of a log\n'.repeat(11_000)}`;
    const rs = batch('express', 120, (i) => (i === 7 ? prompt : 'x'.repeat(2_000)));
    const result = await exporter.export(rs);
    assert.deepEqual(result, { stored: 120, duplicates: 0, refused: [] });
    assert.ok(gate.tooLarge > 0, 'the gate did refuse a body as too large');
    const stored = (await llmflow.spans()).filter((s) => s.trace_id === traceIdFor('express'));
    assert.equal(stored.length, 120);
    const big = JSON.parse(stored.find((s) => s.id === spanIdFor('express', '7'))!.attributes) as Record<
      string,
      unknown
    >;
    assert.ok(String(big['gen_ai.prompt']).startsWith('PASTED LOG line of a log'));
    assert.match(String(big['gen_ai.prompt']), /bytes trimmed\]$/);
    assert.deepEqual(big[TRIMMED_KEYS], ['gen_ai.prompt']);
    // What it learnt holds: the next batch goes in requests that fit, with no refusal.
    const before = gate.tooLarge;
    assert.equal((await exporter.export(batch('express-2', 120, () => 'x'.repeat(2_000)))).stored, 120);
    assert.equal(gate.tooLarge, before);
  } finally {
    await gate.stop();
  }
});

test('a lone span still too large for LLMFlow is cut further, until it is taken', async () => {
  const gate = await startLlmflowGate(llmflow.url, { maxBodyBytes: EXPRESS_LIMIT });
  try {
    // Configured to let spans of 1 MiB through: LLMFlow's own limit is what cuts this one.
    const exporter = new LlmflowExporter({
      url: gate.url,
      timeoutMs: 5_000,
      maxSpansPerRequest: 512,
      spanMaxBytes: 1024 * 1024,
      log: silentLogger,
    });
    const result = await exporter.export(batch('lone', 1, () => 'z'.repeat(300_000)));
    assert.deepEqual(result, { stored: 1, duplicates: 0, refused: [] });
    assert.ok(gate.tooLarge >= 2, `${gate.tooLarge} refusals as too large`);
  } finally {
    await gate.stop();
  }
});

test('a span refused for its content comes back whole, with the reason, for the dead-letter store', async () => {
  const gate = await startLlmflowGate(llmflow.url, { refuse: (body) => body.includes('POISON') });
  try {
    const exporter = new LlmflowExporter({
      url: gate.url,
      timeoutMs: 5_000,
      maxSpansPerRequest: 512,
      spanMaxBytes: 64 * 1024,
      log: silentLogger,
    });
    const rs = batch('content', 9, (i) => (i === 4 ? `POISON ${'p'.repeat(100_000)}` : ''));
    const result = await exporter.export(rs);
    assert.equal(result.stored, 8);
    assert.equal(result.refused.length, 1);
    const [refused] = result.refused;
    assert.equal(refused!.spanId, spanIdFor('content', '4'));
    assert.match(refused!.reason, /400/);
    const span = refused!.resourceSpans.scopeSpans![0]!.spans![0]!;
    assert.equal(
      span.attributes!.find((a) => a.key === 'gen_ai.prompt')!.value!.stringValue!.length,
      100_007,
      'not cut',
    );
  } finally {
    await gate.stop();
  }
});

test('LLMFlow\'s database locked by another connection is "unavailable", not a refusal: the spans are taken on the next try', async () => {
  // A writer holds LLMFlow's SQLite file (as a reader polling it can): LLMFlow answers "database is locked".
  const held = lockDatabase(path.join(llmflow.dataDir, 'data.db'), 3_000);
  await held.locked;
  const exporter = exporterTo(llmflow.url);
  await assert.rejects(exporter.export(batch('locked', 3)), LlmflowUnavailableError);
  await held.done;
  const result = await exporter.export(batch('locked', 3));
  assert.deepEqual(result.refused, []);
  assert.equal((await llmflow.listed()).filter((s) => s.trace_id === traceIdFor('locked')).length, 3);
});

/** Holds an exclusive lock on a SQLite file for `ms` (Bun's sqlite); `locked` once it is held. */
function lockDatabase(file: string, ms: number): { locked: Promise<void>; done: Promise<void> } {
  const script = `import { Database } from 'bun:sqlite';
const db = new Database(process.env.DB_FILE);
db.exec('BEGIN EXCLUSIVE');
process.stdout.write('locked\\n');
Bun.sleepSync(Number(process.env.HOLD_MS));
db.exec('COMMIT');`;
  const child = spawn(BUN, ['-e', script], {
    stdio: ['ignore', 'pipe', 'inherit'],
    env: { ...process.env, DB_FILE: file, HOLD_MS: String(ms) },
  });
  const locked = new Promise<void>((resolve) => child.stdout.once('data', () => resolve()));
  const done = new Promise<void>((resolve) => child.once('close', () => resolve()));
  return { locked, done };
}
