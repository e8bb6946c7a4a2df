import { test } from 'node:test';
import assert from 'node:assert/strict';
import { BackpressureError, PermanentError, RetryableError, kindOf, pauseAfter } from '@ccbridge/errors';
import { DecodeError } from '@ccbridge/otlp';
import { LlmflowUnavailableError } from '@ccbridge/llmflow';

test('every error has one kind: typed ones say theirs, others are classified by what they are', () => {
  const cases: [unknown, string][] = [
    [new PermanentError('x'), 'permanent'],
    [new DecodeError('body is not a protobuf'), 'permanent'],
    [new RangeError('The number Infinity cannot be converted to a BigInt'), 'permanent'],
    [new TypeError("Cannot read properties of undefined (reading 'x')"), 'permanent'],
    [new RetryableError('x'), 'retryable'],
    // Redis's errors, as ioredis throws them: test/unit/redis-errors.test.ts.
    [new Error('something no one typed'), 'retryable'],
    ['a string thrown', 'retryable'],
    [new BackpressureError('x', 10), 'backpressure'],
    [new LlmflowUnavailableError('LLMFlow did not answer'), 'backpressure'],
  ];
  for (const [err, kind] of cases) assert.equal(kindOf(err), kind, String((err as Error).message ?? err));
});

test('the pause after backpressure that does not say how long: 1 s, doubling with each in a row, at most 30 s', () => {
  assert.deepEqual(
    [1, 2, 3, 4, 5, 6, 7, 50].map(pauseAfter),
    [1_000, 2_000, 4_000, 8_000, 16_000, 30_000, 30_000, 30_000],
  );
});
