/** Cutting spans to fit (packages/llmflow/src/fit.ts). */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { TRIMMED_BYTES, TRIMMED_KEYS, TRIMMED_MESSAGES, fitSpan, spanBytes } from '@ccbridge/llmflow';
import { attributesToRecord, type Span } from '@ccbridge/otlp';

const span = (attrs: Record<string, string>): Span => ({
  traceId: '0'.repeat(31) + '1',
  spanId: '0'.repeat(15) + '1',
  name: 'claude_code.interaction',
  startTimeUnixNano: '1',
  endTimeUnixNano: '2',
  attributes: Object.entries(attrs).map(([key, v]) => ({ key, value: { stringValue: v } })),
});

test('a span that fits is sent as it is', () => {
  const s = span({ prompt_length: '12', 'gen_ai.prompt': 'hello' });
  assert.equal(fitSpan(s, 64 * 1024), s);
});

for (const [label, unit] of [
  ['ASCII', 'x'],
  ['multi-byte text', 'é😀'],
  ['text JSON must escape', '"\u0001'],
] as const) {
  test(`a 150 KB value (${label}) is cut: the start kept, how much said, the key named, under the limit`, () => {
    const big = `START ${unit.repeat(Math.ceil(150_000 / unit.length))}`;
    const other = 'y'.repeat(20_000);
    const s = span({ 'gen_ai.prompt': big, tool_input: other, 'session.id': 'abc' });
    const fitted = fitSpan(s, 64 * 1024);
    assert.ok(spanBytes(fitted) <= 64 * 1024, `${spanBytes(fitted)} bytes`);
    const a = attributesToRecord(fitted.attributes);
    assert.ok(String(a['gen_ai.prompt']).startsWith(`START ${unit}`));
    assert.match(String(a['gen_ai.prompt']), /… \[ccbridge: \d+ bytes trimmed\]$/);
    assert.deepEqual(a[TRIMMED_KEYS], ['gen_ai.prompt']);
    assert.ok(Number(a[TRIMMED_BYTES]) > Buffer.byteLength(big) - 64 * 1024);
    assert.equal(a['tool_input'], other, 'a value that need not be cut is whole');
    assert.equal(a['session.id'], 'abc');
    assert.equal(attributesToRecord(s.attributes)['gen_ai.prompt'], big, 'the original is left as it was');
  });
}

test('several large values: the largest are cut first, until the span fits a small limit', () => {
  const s = span({ a: 'a'.repeat(30_000), b: 'b'.repeat(20_000), c: 'c'.repeat(10_000), d: 'short' });
  const fitted = fitSpan(s, 16 * 1024);
  assert.ok(spanBytes(fitted) <= 16 * 1024);
  const a = attributesToRecord(fitted.attributes);
  assert.deepEqual([...(a[TRIMMED_KEYS] as string[])].sort(), ['a', 'b']);
  assert.equal(a['c'], 'c'.repeat(10_000));
  assert.equal(a['d'], 'short');
});

test('a conversation of 500 KB loses its oldest messages first, the newest kept whole and the JSON valid, under the limit', () => {
  const message = (i: number, size: number) => ({
    role: i % 2 ? 'assistant' : 'user',
    parts: [{ type: 'text', content: `message ${i} ${'z'.repeat(size)}` }],
  });
  const conversation = [...Array.from({ length: 50 }, (_, i) => message(i, 10_000)), message(50, 20_000)];
  const text = JSON.stringify(conversation);
  assert.ok(text.length > 500_000);
  const s = span({ 'gen_ai.input.messages': text, 'gen_ai.system_instructions': 'be brief', 'session.id': 'abc' });
  const fitted = fitSpan(s, 64 * 1024);
  assert.ok(spanBytes(fitted) <= 64 * 1024, `${spanBytes(fitted)} bytes`);
  const a = attributesToRecord(fitted.attributes);
  const kept = JSON.parse(String(a['gen_ai.input.messages'])) as { parts: { content: string }[] }[];
  assert.deepEqual(kept.at(-1), message(50, 20_000), 'the newest whole');
  assert.ok(kept.length >= 2 && kept.length < conversation.length);
  assert.deepEqual(kept, conversation.slice(conversation.length - kept.length), 'the newest ones, in order');
  assert.equal(a[TRIMMED_MESSAGES], conversation.length - kept.length);
  assert.deepEqual(a[TRIMMED_KEYS], ['gen_ai.input.messages']);
  assert.equal(a['gen_ai.system_instructions'], 'be brief');
});
